"""The ``codegen`` generation backend: prompts and infilling for a causal LM run, decoded by
:mod:`nl2code.sampling.autoregressive` (sampling) and :mod:`nl2code.sampling.beam` (beam search)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from nl2code.data.retrieval import Retriever, retrieved_prefix, retriever_for
from nl2code.generation.spec import InfillMode, PromptFormat, infill_mode_of, spec_from_config
from nl2code.generation.types import Candidate, GenerationConfig, LoadedRun
from nl2code.sampling.autoregressive import cut_at_stop, sample, stop_checker
from nl2code.sampling.beam import beam_search
from nl2code.sampling.decoder import fit_prompts

RAG_CODE_ROOM = 64  # tokens a retrieval-augmented prompt leaves for the command


class ARGenerator:
    """The ``codegen`` backend of :func:`nl2code.api.load_generator`.

    Prompts are read the way the run's (last stage's) training data was formatted: for
    ``format: nl_code`` a prompt is an utterance and the model continues ``NL <sep>``; for
    ``format: code`` a prompt is code to continue. ``prompt_format`` overrides this. A run trained
    with ``objective.retrieval_k > 0`` gets an NL prompt prefixed with the commands of the nearest
    utterances of its own training records (:meth:`retrieved`), as it was trained.

    Decoding (``GenerationConfig``): ``num_beams > 1`` is beam search; ``temperature == 0`` is
    greedy, and with ``n > 1`` beam search with ``max(num_beams, n)`` beams (n distinct greedy
    candidates); otherwise sampling. Candidates are ranked by mean token log-probability.
    ``guidance != 1`` samples with classifier-free guidance against the empty request ``<sep>`` (an NL run
    trained with ``objective.cond_dropout``; sampling or greedy, not beam search).
    """

    kind = "codegen"

    def __init__(
        self,
        run: LoadedRun,
        *,
        prompt_format: PromptFormat | None = None,
        infill_mode: InfillMode | None = None,
        use_cache: bool = True,
    ):
        self.run, self.model, self.tok = run, run.model, run.tokenizer
        spec = run.spec or spec_from_config(run.config)
        self.prompt_format: PromptFormat = prompt_format or spec.prompt_format
        self.infill_mode = infill_mode or spec.infill_mode
        # an imported checkpoint's tokenizer: every eos of its generation_config stops, bos leads prompts
        self.stop_ids = list(getattr(self.tok, "stop_ids", [self.tok.eos_id]))
        self.bos = list(getattr(self.tok, "bos_prefix", []))
        self.use_cache = use_cache
        self.prefix_lm = bool(getattr(self.model.cfg, "prefix_lm", False))
        self.retrieval_k = spec.retrieval_k
        self._retrieval_data = spec.retrieval_data
        self.guidable = spec.guidable
        self._retriever: Retriever | None = None

    def retrieved(self, nl: str, room: int = RAG_CODE_ROOM) -> list[int]:
        """The ``cmd_1 \\n ... <eom>`` prefix of a retrieval-augmented run (``objective.retrieval_k``)
        for utterance ``nl``, from the run's own training records; leaves ``room`` tokens for the code."""
        if self._retriever is None:
            self._retriever = retriever_for(self._retrieval_data)
        budget = self.model.cfg.max_seq_len - len(self.tok.encode(nl)) - 1 - room
        return retrieved_prefix(self.tok, self._retriever, nl, self.retrieval_k, budget)

    # -- prompts --------------------------------------------------------------------------------
    def encode_prompt(self, prompt: str, prompt_format: PromptFormat | None = None) -> list[int]:
        """Token ids the model continues for ``prompt``."""
        fmt = prompt_format or self.prompt_format
        ids = self.tok.encode(prompt)
        if fmt == "nl":
            head = self.retrieved(prompt) if self.retrieval_k else []
            return [*head, *ids, self.tok.sep_id]
        if not ids:
            return self.bos or [self.tok.eos_id]  # an empty code prompt starts a new document
        return [*self.bos, *ids]

    def infill_prompt(self, prefix: str, suffix: str, mode: InfillMode | None = None) -> tuple[list[int], list[int]]:
        """(prompt ids, stop ids) for infilling between ``prefix`` and ``suffix``.

        Runs trained on ``NL <sep> code`` saw rewritten files after an utterance and ``<sep>``, so
        their prompt starts with ``<sep>`` (an empty utterance).
        """
        tok, mode = self.tok, mode or self.infill_mode
        pre, suf = tok.encode(prefix), tok.encode(suffix)
        head = [*self.bos, *([tok.sep_id] if self.prompt_format == "nl" else [])]
        if mode == "codegen2":
            m1 = tok.sentinel_id(1)
            return [*head, *pre, m1, *suf, tok.eos_id, tok.sep_id, m1], [tok.eom_id, tok.eos_id]
        if mode == "psm":
            return [*head, tok.fim_prefix_id, *pre, tok.fim_suffix_id, *suf, tok.fim_middle_id], [tok.eos_id]
        if mode == "spm":
            return [*head, tok.fim_prefix_id, tok.fim_suffix_id, *suf, tok.fim_middle_id, *pre], [tok.eos_id]
        raise ValueError(
            f"{self.run.run_dir}: this run was not trained to infill (no codegen2_mixture objective with "
            "span_rate or fim_rate > 0); choose a mode (codegen2, psm, spm) to try anyway"
        )

    # -- decoding ---------------------------------------------------------------------------------
    def _beams(self, cfg: GenerationConfig) -> int:
        return max(cfg.num_beams, cfg.n) if cfg.num_beams > 1 or (cfg.temperature == 0 and cfg.n > 1) else 1

    def check(self, cfg: GenerationConfig, prompt_format: PromptFormat | None = None) -> None:
        """Raise ValueError, before any work, for guidance this run or decoding cannot take."""
        if cfg.guidance == 1 and cfg.decoder_guidance in (None, 1):
            return
        if cfg.decoder_guidance not in (None, cfg.guidance):
            raise ValueError("decoder_guidance is CodeFusion's; an AR model takes guidance alone")
        if not self.guidable or (prompt_format or self.prompt_format) != "nl":
            raise ValueError(
                f"{self.run.run_dir}: guidance needs an NL run trained with objective.cond_dropout > 0 "
                "(it contrasts against the empty request it learned)"
            )
        if self._beams(cfg) > 1 or cfg.valid_stop is not None:
            raise ValueError("guidance is for sampling or greedy decoding, not beam search or valid_stop")

    def decode_ids(
        self,
        prompt_ids: list[list[int]],
        cfg: GenerationConfig,
        stop_ids: Sequence[int],
        null_ids: list[int] | None = None,
    ) -> list[list[Candidate]]:
        """``cfg.n`` ranked candidates per prompt (token-id prompts); ``null_ids``: the empty request's prompt,
        for guided sampling."""
        model_len = self.model.cfg.max_seq_len
        prompt_ids, max_new = fit_prompts(prompt_ids, model_len, cfg.max_new_tokens)
        beams = self._beams(cfg)
        stop = stop_checker(self.tok.decode, cfg.stop)
        accept = self._acceptor(cfg)
        per_chunk = max(1, cfg.batch_size // max(cfg.n, beams))
        results: list[list[Candidate]] = []
        for c in range(0, len(prompt_ids), per_chunk):
            chunk = prompt_ids[c : c + per_chunk]
            if beams > 1 or accept is not None:  # greedy with valid_stop is a one-beam search
                samples = [
                    beam_search(
                        self.model,
                        p,
                        num_beams=beams,
                        n_return=cfg.n,
                        max_new_tokens=max_new,
                        stop_ids=stop_ids,
                        stop=stop,
                        accept=accept,
                        pad_id=self.tok.pad_id,
                        use_cache=self.use_cache,
                        prefix_lm=self.prefix_lm,
                    )
                    for p in chunk
                ]
            else:
                samples = sample(
                    self.model,
                    chunk,
                    n=cfg.n,
                    max_new_tokens=max_new,
                    temperature=cfg.temperature,
                    top_k=cfg.top_k,
                    top_p=cfg.top_p,
                    stop_ids=stop_ids,
                    stop=stop,
                    seed=cfg.seed,
                    pad_id=self.tok.pad_id,
                    use_cache=self.use_cache,
                    prefix_lm=self.prefix_lm,
                    prompt_offset=c,
                    guidance=cfg.guidance,
                    null_prompts=None if null_ids is None else [null_ids] * len(chunk),
                )
            for group in samples:
                ranked = sorted(group, key=lambda s: s.score, reverse=True)
                results.append(
                    [
                        Candidate(
                            cut_at_stop(self.tok.decode(s.ids, skip_special=True), cfg.stop),
                            s.score,
                            {"finish": s.finish, "tokens": len(s.ids)},
                        )
                        for s in ranked
                    ]
                )
        return results

    def _acceptor(self, cfg: GenerationConfig) -> Callable[[list[int]], bool] | None:
        """``cfg.valid_stop``'s check on a hypothesis's tokens (its text up to a stop string), or None."""
        if cfg.valid_stop is None:
            return None
        from nl2code.eval.metrics.syntax import LANGUAGES, syntax_valid

        if cfg.valid_stop not in LANGUAGES:
            raise ValueError(f"valid_stop must be one of {', '.join(LANGUAGES)}, got {cfg.valid_stop!r}")
        language = cfg.valid_stop
        return lambda ids: syntax_valid(cut_at_stop(self.tok.decode(ids, skip_special=True), cfg.stop), language)

    def generate(
        self, prompts: list[str], cfg: GenerationConfig, *, prompt_format: PromptFormat | None = None
    ) -> list[list[Candidate]]:
        """For each prompt, ``cfg.n`` candidates, best first."""
        self.check(cfg, prompt_format)
        ids = [self.encode_prompt(p, prompt_format) for p in prompts]
        null = self.encode_prompt("", "nl") if cfg.guidance != 1 else None
        return self.decode_ids(ids, cfg, self.stop_ids, null)

    @torch.no_grad()
    def token_logprobs(self, prompt: str, completion: str, top: int = 0) -> dict[str, list]:
        """Score ``completion`` after ``prompt`` token by token (OpenAI's ``logprobs`` / ``echo``).

        The prompt is encoded as :meth:`generate` encodes it and the completion is re-tokenized, so
        the numbers are the model's log-probabilities of that text. Returns, for the prompt's own
        tokens then the completion's: ``tokens`` (text), ``token_logprobs`` (None for the first
        token, which has no context), ``top_logprobs`` (the ``top`` most likely alternatives at each
        position, {text: logprob}; None without context or when ``top`` is 0) and ``prompt_tokens``
        (how many of them belong to the prompt). A text longer than the model's context keeps its end.
        """
        context, body = self.encode_prompt(prompt), self.tok.encode(completion)
        ids = [*context, *body][-self.model.cfg.max_seq_len :]
        n_prompt = max(0, len(ids) - len(body))
        device = next(self.model.parameters()).device
        x = torch.tensor([ids], dtype=torch.long, device=device)
        kwargs = {}
        if self.prefix_lm:  # the prompt is read bidirectionally, as when sampling
            kwargs["prefix_mask"] = (torch.arange(len(ids), device=device) < n_prompt)[None]
        logp = torch.log_softmax(self.model(x, **kwargs).logits[0].float(), dim=-1)  # (T, V)
        out: dict[str, list] = {"tokens": [], "token_logprobs": [], "top_logprobs": []}
        for i, tid in enumerate(ids):
            out["tokens"].append(self.tok.decode([tid]))
            if i == 0:
                out["token_logprobs"].append(None)
                out["top_logprobs"].append(None)
                continue
            out["token_logprobs"].append(float(logp[i - 1, tid]))
            if top > 0:
                vals, idx = logp[i - 1].topk(min(top, logp.shape[-1]))
                out["top_logprobs"].append({self.tok.decode([int(j)]): float(v) for v, j in zip(vals, idx)})
            else:
                out["top_logprobs"].append(None)
        out["prompt_tokens"] = [n_prompt]
        return out

    def infill(
        self, prefix: str, suffix: str, cfg: GenerationConfig, *, mode: InfillMode | None = None
    ) -> list[Candidate]:
        """Candidates for the text between ``prefix`` and ``suffix``, best first."""
        if cfg.guidance != 1:
            raise ValueError("guidance needs a request to contrast; infilling has none")
        ids, stop_ids = self.infill_prompt(prefix, suffix, mode)
        return self.decode_ids([ids], cfg, stop_ids)[0]


__all__ = ["RAG_CODE_ROOM", "ARGenerator", "infill_mode_of"]
