"""The ``codefusion`` generation backend: utterances in, ranked programs out, through
:class:`nl2code.sampling.diffusion.DiffusionSampler`."""

from __future__ import annotations

import torch

from nl2code.data.retrieval import Retriever, rag_context, retriever_for
from nl2code.generation.spec import spec_from_config
from nl2code.generation.types import Candidate, GenerationConfig, LoadedRun
from nl2code.sampling.autoregressive import cut_at_stop
from nl2code.sampling.diffusion import DECODED, DiffusionSampler, DiffusionSamples, Rounding, default_rounding

# The steps a user gets when they name none (CLI, server, demo). Eta-0 sampling with 20 strided steps
# scored at or above 50 steps and above the single-step prediction on Bash (benchmarks/results/
# gpu_bash_cf75m.md, bash_matched_cf_cpu.md); the paper's T = 1,200 costs 60 times as long.
DEFAULT_STEPS = 20


class DiffusionGenerator:
    """The ``codefusion`` backend of :func:`nl2code.api.load_generator`.

    A prompt is an utterance (cut to the model's ``max_nl_length``); runs whose last stage was
    unconditional or CPD pre-training sample unconditionally and ignore the prompt text. All noise of
    one call comes from a generator seeded with ``cfg.seed``, so the same seed, prompts and
    ``batch_size`` give the same candidates; ``cfg.n`` candidates are ``n`` independent ``x_T`` draws,
    ranked by mean token log-probability. ``cfg.steps`` = inference steps (None = the training T,
    the paper's DDPM loop; fewer are strided DDIM-style with the same ``eta``).

    Args:
        run: the loaded run.
        rounding: ``decoder`` (CodeFusion), ``grounding``, ``clamping``, ``decoder_clamp`` or ``decoder_sample``;
            default :func:`default_rounding` (``decoder_clamp``, or ``grounding`` without a decoder).
        eta: reverse-step stochasticity (1 = DDPM, 0 = deterministic DDIM given ``x_T``, the default).
    """

    kind = "codefusion"
    prompt_format = "nl"

    def __init__(self, run: LoadedRun, *, rounding: Rounding | None = None, eta: float = 0.0):
        self.run, self.model, self.tok = run, run.model, run.tokenizer
        if rounding is None:
            rounding = default_rounding(self.model)
        if rounding in DECODED and self.model.decoder is None:
            raise ValueError(f"{run.run_dir}: the model has no decoder (decoder_layers: 0); use grounding or clamping")
        self.rounding: Rounding = rounding
        self.eta = eta
        spec = run.spec or spec_from_config(run.config)
        self.conditional = spec.conditional
        self.guidable = spec.conditional and spec.guidable
        self.retrieval_k, self._retrieval_data = spec.retrieval_k, spec.retrieval_data
        self._retriever: Retriever | None = None

    def sampler(self, cfg: GenerationConfig) -> DiffusionSampler:
        rounding = getattr(cfg, "rounding", None) or self.rounding
        sampler = DiffusionSampler(
            self.model,
            num_steps=cfg.steps,
            eta=self.eta,
            rounding=rounding,
            eos_id=self.tok.eos_id,
            max_rows=max(cfg.batch_size, cfg.n, cfg.draws),
            score=getattr(cfg, "score", None) or "final",  # DiffusionSampler's scores
            guidance=getattr(cfg, "guidance", 1.0),
            decoder_guidance=getattr(cfg, "decoder_guidance", None),
        )
        if (sampler.guidance != 1 or sampler.decoder_guidance != 1) and not self.guidable:
            raise ValueError(
                f"{self.run.run_dir}: guidance needs a run trained with objective.cond_dropout > 0 (this one "
                + ("samples unconditionally)" if not self.conditional else "never saw the empty request)")
            )
        return sampler

    def check(self, cfg: GenerationConfig) -> None:
        """Raise ValueError, before any work, for settings this model cannot take (steps above T, a
        rounding it lacks, guidance for a model that never learned the empty request); see
        :func:`nl2code.generation.types.check_config`."""
        self.sampler(cfg)

    def default_steps(self) -> int:
        """:data:`DEFAULT_STEPS`, or the training T when that is smaller."""
        return min(DEFAULT_STEPS, self.model.cfg.num_timesteps)

    def _generator(self, seed: int) -> torch.Generator:
        return torch.Generator(device=self.run.device).manual_seed(seed)

    def encode_prompt(self, prompt: str) -> list[int]:
        """The encoder's input: the utterance, behind its retrieved commands for a retrieval-augmented run."""
        length = self.model.cfg.max_nl_length
        ids = self.tok.encode(prompt)[:length]
        if not self.retrieval_k:
            return ids
        if self._retriever is None:
            self._retriever = retriever_for(self._retrieval_data)
        return rag_context(self.tok, self._retriever, prompt, ids, self.retrieval_k, length)

    def generate(self, prompts: list[str], cfg: GenerationConfig) -> list[list[Candidate]]:
        """For each prompt, ``cfg.n`` candidates, best first."""
        sampler, gen = self.sampler(cfg), self._generator(cfg.seed)
        draws = max(cfg.n, cfg.draws)
        if self.conditional:
            out = sampler.generate([self.encode_prompt(p) for p in prompts], draws, gen)
        else:
            out = sampler.generate(None, draws, gen, num_prompts=len(prompts))
        groups = self._texts(out, cfg)
        return groups if draws == cfg.n else [best_distinct(g, cfg.n) for g in groups]

    def infill(self, prefix: str, suffix: str, cfg: GenerationConfig, prompt: str = "") -> list[Candidate]:
        """Candidates for the code between ``prefix`` and ``suffix`` (optionally under an utterance).

        The middle gets every code position the prefix and suffix leave free; it ends at its first
        predicted pad/eos. Candidates are the middle text alone, best first.
        """
        pre, suf = self.tok.encode(prefix), self.tok.encode(suffix)
        middle = self.model.cfg.code_length - len(pre) - len(suf) - 1
        if middle < 1:
            raise ValueError(
                f"prefix + suffix take {len(pre) + len(suf)} tokens; the model's code_length is "
                f"{self.model.cfg.code_length}"
            )
        cond = self.encode_prompt(prompt) if self.conditional and prompt else None
        if self.conditional and cond is None:
            cond = [self.tok.pad_id]  # an empty utterance
        out = self.sampler(cfg).infill(cond, pre, suf, middle, cfg.n, self._generator(cfg.seed), eos_id=self.tok.eos_id)
        mids = DiffusionSamples(ids=[[c[len(pre) : len(c) - len(suf)] for c in out.ids[0]]], scores=out.scores)
        return self._texts(mids, cfg)[0]

    def _texts(self, samples: DiffusionSamples, cfg: GenerationConfig) -> list[list[Candidate]]:
        return [
            [
                Candidate(cut_at_stop(self.tok.decode(ids, skip_special=True), cfg.stop), score, {"tokens": len(ids)})
                for ids, score in zip(group_ids, group_scores, strict=True)
            ]
            for group_ids, group_scores in zip(samples.ids, samples.scores, strict=True)
        ]


def best_distinct(ranked: list[Candidate], n: int) -> list[Candidate]:
    """The first ``n`` candidates of distinct text (best first), topped up with the best repeats."""
    firsts: dict[str, Candidate] = {}
    repeats: list[Candidate] = []
    for c in ranked:
        if c.text in firsts:
            repeats.append(c)
        else:
            firsts[c.text] = c
    return [*firsts.values(), *repeats][:n]


__all__ = ["DiffusionGenerator", "best_distinct"]
