"""Left-to-right decoding for causal LMs: greedy / temperature / top-k / top-p sampling with a KV
cache, stop tokens and stop strings, n samples per prompt; and :class:`ARGenerator`, the
``codegen`` backend of :func:`nl2code.api.load_generator` (``generate`` and ``infill``).

Randomness: every output row (prompt i, sample j) draws from its own ``torch.Generator`` seeded
from ``(seed, i, j)``, so a candidate does not depend on how prompts are batched, and the same
seed always gives the same output. Scores are log-probabilities under the model itself
(temperature 1, no filtering), whatever distribution the tokens were drawn from.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from nl2code.sampling.decoder import StepDecoder, fit_prompts
from nl2code.utils.seed import derive_seed

Finish = Literal["stop_token", "stop_string", "length"]
PromptFormat = Literal["nl", "code"]
InfillMode = Literal["codegen2", "psm", "spm"]
RAG_CODE_ROOM = 64  # tokens a retrieval-augmented prompt leaves for the command


@dataclass
class Sample:
    """One generated continuation.

    Attributes:
        ids: generated tokens, without the stop token.
        logprob: summed model log-probability of the generated tokens (and of the stop token
            when it ended the sample).
        n_scored: number of tokens in ``logprob``.
        finish: what ended it: a stop token, a stop string, or the token budget.
    """

    ids: list[int]
    logprob: float
    n_scored: int
    finish: Finish

    @property
    def score(self) -> float:
        """Mean token log-probability (higher is better)."""
        return self.logprob / max(self.n_scored, 1)


def filter_logits(logits: torch.Tensor, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """Set all but the top-k / nucleus-p tokens of each row of ``logits`` (B, V) to -inf.

    top-k keeps exactly ``k`` tokens even when several share the k-th value (indices from
    ``topk``, not a threshold). top-p keeps the most likely tokens until their mass reaches
    ``top_p`` (the most likely token always stays).
    """
    out = logits
    if 0 < top_k < logits.shape[-1]:
        keep = logits.topk(top_k, dim=-1).indices
        out = torch.full_like(logits, float("-inf")).scatter(-1, keep, logits.gather(-1, keep))
    if top_p < 1.0:
        sorted_logits, order = out.sort(dim=-1, descending=True, stable=True)
        probs = sorted_logits.softmax(-1)
        before = probs.cumsum(-1) - probs  # mass of the strictly more likely tokens
        drop_sorted = before >= top_p
        drop_sorted[:, 0] = False
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        out = out.masked_fill(drop, float("-inf"))
    return out


def next_tokens(
    logits: torch.Tensor,
    generators: Sequence[torch.Generator],
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
) -> torch.Tensor:
    """(B,) next tokens from ``logits`` (B, V): argmax when ``temperature == 0``, else a draw from
    the filtered, tempered distribution, row b using ``generators[b]``."""
    if temperature == 0:
        return logits.argmax(-1)
    probs = filter_logits(logits / temperature, top_k, top_p).softmax(-1)
    # Exponential race: argmax p_i / E_i with E_i ~ Exp(1) is a draw from p (Gumbel-max in disguise).
    noise = torch.stack(
        [torch.empty(logits.shape[-1], device=logits.device).exponential_(generator=g) for g in generators]
    )
    return (probs / noise).argmax(-1)


@torch.no_grad()
def sample(
    model: nn.Module,
    prompts: list[list[int]],
    *,
    n: int = 1,
    max_new_tokens: int = 128,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    stop_ids: Sequence[int] = (),
    stop: Callable[[list[int]], bool] | None = None,
    seed: int = 0,
    pad_id: int = 0,
    use_cache: bool = True,
    prefix_lm: bool = False,
    prompt_offset: int = 0,
) -> list[list[Sample]]:
    """``n`` continuations of each prompt (in draw order, not ranked).

    Args:
        model: a causal LM (see :class:`~nl2code.sampling.decoder.StepDecoder`).
        prompts: token id lists; they are left-padded into one batch.
        stop_ids: tokens that end a sample (not included in its ``ids``).
        stop: called with a sample's tokens after every step; True ends it (stop strings).
        seed: row (prompt i, sample j) draws from a generator seeded with
            ``(seed, prompt_offset + i, j)``; a caller splitting a prompt list into batches passes
            each batch's offset, so outputs do not depend on the split.
        use_cache: KV cache (False recomputes the full sequence each step; same output).
        prefix_lm: attend bidirectionally over each prompt (prefix-LM models).
    """
    stop_set = set(stop_ids)
    dec = StepDecoder(
        model, prompts, pad_id=pad_id, max_new_tokens=max_new_tokens, use_cache=use_cache, prefix_lm=prefix_lm
    )
    logits = dec.start()
    rows = [(i, j) for i in range(len(prompts)) for j in range(n)]
    if n > 1:
        expand = torch.arange(len(prompts), device=logits.device).repeat_interleave(n)
        dec.select(expand)
        logits = logits.index_select(0, expand)
    gens = [torch.Generator(device=logits.device).manual_seed(derive_seed(seed, prompt_offset + i, j)) for i, j in rows]
    ids: list[list[int]] = [[] for _ in rows]
    logprob = [0.0] * len(rows)
    finish: list[Finish] = ["length"] * len(rows)
    active = list(range(len(rows)))  # decoder row -> output row
    for step in range(max_new_tokens):
        chosen = next_tokens(logits, [gens[r] for r in active], temperature, top_k, top_p)
        token_logp = logits.log_softmax(-1).gather(-1, chosen[:, None])[:, 0]
        still = []
        for pos, (r, tok, lp) in enumerate(zip(active, chosen.tolist(), token_logp.tolist())):
            logprob[r] += lp
            if tok in stop_set:
                finish[r] = "stop_token"
                continue
            ids[r].append(tok)
            if stop is not None and stop(ids[r]):
                finish[r] = "stop_string"
                continue
            still.append(pos)
        if not still or step == max_new_tokens - 1:
            break
        if len(still) < len(active):  # drop finished rows from the batch
            dec.select(still)
            chosen = chosen[torch.tensor(still, device=chosen.device)]
            active = [active[p] for p in still]
        logits = dec.step(chosen)
    out = [Sample(ids[r], logprob[r], len(ids[r]) + (finish[r] == "stop_token"), finish[r]) for r in range(len(rows))]
    return [out[i * n : (i + 1) * n] for i in range(len(prompts))]


def stop_checker(decode: Callable[[list[int]], str], stops: Sequence[str]) -> Callable[[list[int]], bool] | None:
    """A ``stop`` callback for :func:`sample`: True once the decoded tokens contain a stop string.

    Only the last few tokens are decoded each step: a stop string of L characters spans at most
    4 L byte-level tokens (plus one partial token on each side).
    """
    stops = [s for s in stops if s]
    if not stops:
        return None
    window = 4 * max(len(s) for s in stops) + 2

    def check(ids: list[int]) -> bool:
        tail = decode(ids[-window:])
        return any(s in tail for s in stops)

    return check


def cut_at_stop(text: str, stops: Sequence[str]) -> str:
    """``text`` up to (not including) the earliest occurrence of any stop string."""
    cuts = [text.find(s) for s in stops if s and s in text]
    return text[: min(cuts)] if cuts else text


# -- the api backend --------------------------------------------------------------------------------


def _stages(config: Any) -> list:
    from nl2code.train.config import resolve_stages

    return resolve_stages(config)


def infill_mode_of(config: Any) -> InfillMode | None:
    """How a run was trained to infill: ``codegen2`` (span corruption), ``psm``/``spm`` (FIM), or None.

    Read from the objective of the run's last stage that used ``codegen2_mixture``.
    """
    from nl2code.objectives.autoregressive import CodeGen2MixtureConfig

    for stage in reversed(_stages(config)):
        obj = stage.objective
        if isinstance(obj, CodeGen2MixtureConfig):
            if obj.span_rate > 0:
                return "codegen2"
            if obj.fim_rate > 0:
                return "spm" if obj.spm_rate > 0.5 else "psm"
    return None


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
    """

    kind = "codegen"

    def __init__(
        self,
        run: Any,
        *,
        prompt_format: PromptFormat | None = None,
        infill_mode: InfillMode | None = None,
        use_cache: bool = True,
    ):
        self.run, self.model, self.tok = run, run.model, run.tokenizer
        last = _stages(run.config)[-1].data
        self.prompt_format: PromptFormat = prompt_format or ("nl" if last.format == "nl_code" else "code")
        # An imported checkpoint's tokenizer knows its infilling format (FIM or CodeGen2 sentinels).
        self.infill_mode = infill_mode or infill_mode_of(run.config) or getattr(self.tok, "infill_mode", None)
        self.stop_ids = list(getattr(self.tok, "stop_ids", [self.tok.eos_id]))
        self.use_cache = use_cache
        self.prefix_lm = bool(getattr(self.model.cfg, "prefix_lm", False))
        last_stage = _stages(run.config)[-1]
        self.retrieval_k = int(getattr(last_stage.objective, "retrieval_k", 0) or 0)
        self._retrieval_data = last_stage.data
        self._retriever: Any = None

    def retrieved(self, nl: str, room: int = RAG_CODE_ROOM) -> list[int]:
        """The ``cmd_1 \\n ... <eom>`` prefix of a retrieval-augmented run (``objective.retrieval_k``)
        for utterance ``nl``, from the run's own training records; leaves ``room`` tokens for the code."""
        from nl2code.data.retrieval import retrieved_prefix, retriever_for

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
        bos = list(getattr(self.tok, "bos_prefix", []))  # checkpoints trained with a leading <s>
        if not ids:
            return bos or [self.tok.eos_id]  # an empty code prompt starts a new document
        return [*bos, *ids]

    def infill_prompt(self, prefix: str, suffix: str, mode: InfillMode | None = None) -> tuple[list[int], list[int]]:
        """(prompt ids, stop ids) for infilling between ``prefix`` and ``suffix``.

        Runs trained on ``NL <sep> code`` saw rewritten files after an utterance and ``<sep>``, so
        their prompt starts with ``<sep>`` (an empty utterance).
        """
        tok, mode = self.tok, mode or self.infill_mode
        pre, suf = tok.encode(prefix), tok.encode(suffix)
        head = [*getattr(tok, "bos_prefix", []), *([tok.sep_id] if self.prompt_format == "nl" else [])]
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
    def decode_ids(self, prompt_ids: list[list[int]], cfg: Any, stop_ids: Sequence[int]) -> list[list[Any]]:
        """``cfg.n`` ranked :class:`~nl2code.api.Candidate` per prompt (token-id prompts)."""
        from nl2code.api import Candidate
        from nl2code.sampling.beam import beam_search

        model_len = self.model.cfg.max_seq_len
        prompt_ids, max_new = fit_prompts(prompt_ids, model_len, cfg.max_new_tokens)
        beams = max(cfg.num_beams, cfg.n) if cfg.num_beams > 1 or (cfg.temperature == 0 and cfg.n > 1) else 1
        stop = stop_checker(self.tok.decode, cfg.stop)
        per_chunk = max(1, cfg.batch_size // max(cfg.n, beams))
        results: list[list[Any]] = []
        for c in range(0, len(prompt_ids), per_chunk):
            chunk = prompt_ids[c : c + per_chunk]
            if beams > 1:
                samples = [
                    beam_search(
                        self.model,
                        p,
                        num_beams=beams,
                        n_return=cfg.n,
                        max_new_tokens=max_new,
                        stop_ids=stop_ids,
                        stop=stop,
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

    def generate(self, prompts: list[str], cfg: Any, *, prompt_format: PromptFormat | None = None) -> list[list[Any]]:
        """For each prompt, ``cfg.n`` candidates (``api.Candidate``), best first."""
        ids = [self.encode_prompt(p, prompt_format) for p in prompts]
        return self.decode_ids(ids, cfg, self.stop_ids)

    def infill(self, prefix: str, suffix: str, cfg: Any, *, mode: InfillMode | None = None) -> list[Any]:
        """Candidates for the text between ``prefix`` and ``suffix``, best first."""
        ids, stop_ids = self.infill_prompt(prefix, suffix, mode)
        return self.decode_ids([ids], cfg, stop_ids)[0]
