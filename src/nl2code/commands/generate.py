"""``nl2code generate --run DIR [PROMPT ...]``: ranked candidates from any trained run (AR or diffusion).

Prompts come from the arguments, from ``--prompts-file`` (one per line, or JSONL with a
``prompt``/``nl`` field and optional ``task_id``), or from a benchmark (``--benchmark TASK``). With
``--out`` every candidate becomes a JSONL row ``{task_id, prompt, rank, completion, score}`` that
``nl2code eval`` reads directly (MTPB rows are ``{task_id, test_case, completions, sample}``).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from nl2code.cli import CLIError

EPILOG = """\
output: without --json, each prompt and its candidates (best first, with the mean token
log-probability). With --json: for ONE prompt a JSON list of strings, for several a list of lists
(one per prompt, in input order). With --out FILE.jsonl: one row per candidate.

decoding (codegen runs), printed at the start:
  --temperature 0 (the default) and -n 1: greedy;
  --temperature 0 and -n K > 1: BEAM SEARCH with K beams (the K best distinct candidates, no sampling);
  --num-beams B > 1: beam search with max(B, n) beams;
  --temperature T > 0: sampling (with --top-k / --top-p), n independent candidates.
Diffusion runs use -n, --seed, --steps and --batch-size and ignore the AR-only flags.

examples:
  nl2code generate --run runs/bash "find all python files modified today" -n 5 --json
  nl2code generate --run runs/bash --benchmark codefusion-bash -n 5 --out samples.jsonl \\
      --data ../shared/data/codefusion/benchmarks/BashBenchmarks.json
  nl2code eval codefusion-bash --samples samples.jsonl --data ... --out results/
  nl2code generate --run runs/py --benchmark mtpb --data mtpb.jsonl --temperature 0.2 --top-p 0.95 \\
      -n 5 --out mtpb_samples.jsonl
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    from nl2code.rundir import LAYOUT

    p = sub.add_parser(
        "generate",
        help="generate ranked candidates for prompts or a benchmark from a trained run",
        description="Load the final model of a run directory and generate -n candidates per prompt, "
        "best first. Works for every model kind (codegen, codefusion).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("prompts", nargs="*", metavar="PROMPT", help="prompts (NL for NL->code runs, code for code runs)")
    p.add_argument("--run", "--run-dir", dest="run", required=True, metavar="DIR", help=f"run directory ({LAYOUT})")
    p.add_argument(
        "--ensemble",
        action="append",
        default=[],
        metavar="DIR",
        help="another AR run of the same tokenizer (repeatable): --run and these are decoded as one model, the "
        "mixture of their next-token distributions (e.g. training seeds of one recipe)",
    )
    src = p.add_argument_group("prompt sources (instead of PROMPT arguments)")
    src.add_argument(
        "--prompts-file", metavar="FILE", help="one prompt per line, or JSONL rows with prompt/nl (+ task_id)"
    )
    src.add_argument(
        "--benchmark",
        metavar="TASK",
        help="prompts of an eval task: humaneval, mbpp, mtpb, codefusion-bash, codefusion-python, "
        "codefusion-cf, nl2bash, conala",
    )
    src.add_argument("--data", metavar="PATH", help="the benchmark's data (as for nl2code eval --data)")
    src.add_argument(
        "--limit",
        type=int,
        metavar="N",
        help="only N prompts: the first N of a prompts file; of a benchmark, N problems drawn at random with --seed "
        "(never a prefix: benchmark files are often sorted)",
    )
    src.add_argument("--test-cases", default="0,1,2,3,4", metavar="LIST", help="MTPB test cases (default 0,1,2,3,4)")
    dec = p.add_argument_group("decoding")
    dec.add_argument(
        "-n",
        type=int,
        default=1,
        help="candidates per prompt (default 1; with --temperature 0 they come from beam search)",
    )
    dec.add_argument(
        "--seed", type=int, default=0, help="seed of all sampling noise and of the --limit sample (default 0)"
    )
    dec.add_argument(
        "--steps", type=int, help="diffusion: denoising steps, strided over the training T (default 20, at most T)"
    )
    add_rounding(dec)
    dec.add_argument(
        "--score",
        choices=SCORE_CHOICES,
        help="diffusion: how the candidates are ranked; final = D+H's confidence on the last x_0 (default), "
        "denoise = each candidate re-noised and denoised in one step given the request (orders multi-step draws)",
    )
    dec.add_argument(
        "--guidance",
        type=float,
        default=1.0,
        help="classifier-free guidance weight, u + w (c - u) against the empty request (default 1 = off; needs a run "
        "trained with objective.cond_dropout > 0; AR: sampling or greedy only)",
    )
    dec.add_argument(
        "--temperature",
        type=float,
        default=0.0,
        help="0 = greedy, or beam search when -n > 1 (default); > 0 = sampling",
    )
    dec.add_argument("--top-k", type=int, default=0, help="keep the k most likely tokens (0 = off)")
    dec.add_argument("--top-p", type=float, default=1.0, help="nucleus mass (1 = off)")
    dec.add_argument("--num-beams", type=int, default=1, help="beam search width (1 = off)")
    dec.add_argument("--max-new-tokens", type=int, default=128, help="AR: tokens per candidate (default 128)")
    dec.add_argument(
        "--stop",
        action="append",
        default=[],
        metavar="STR",
        help="stop string (repeatable; Python escapes like \\n are decoded)",
    )
    dec.add_argument(
        "--draws",
        type=int,
        default=0,
        help="diffusion: x_T draws per prompt, of which the -n best distinct candidates are kept (0 = -n draws)",
    )
    dec.add_argument(
        "--valid-stop",
        choices=SYNTAX_CHOICES,
        help="AR beam search or greedy: a candidate may end only where it parses in this language "
        "(constrained stopping; give more --num-beams than -n so enough candidates end validly)",
    )
    dec.add_argument(
        "--mbr",
        choices=MBR_CHOICES,
        help="rank each prompt's distinct candidates by minimum Bayes risk under this language's metric (bash: "
        "command match score, python: sentence BLEU): the one the others agree with most first; give many "
        "sampled candidates, e.g. -n 30 --temperature 1",
    )
    dec.add_argument(
        "--mbr-set",
        type=int,
        default=1,
        metavar="K",
        help="with --mbr: choose the first K candidates together, each next one covering the samples the chosen "
        "ones agree with least (for a best-of-K use such as showing K candidates; the first is unchanged)",
    )
    dec.add_argument(
        "--mbr-retrieval",
        type=float,
        default=0.0,
        metavar="SHARE",
        help="with --mbr: also rank the programs of the 10 training requests nearest to the prompt (TF-IDF over "
        "the run's training rows) beside the samples, under a mixture of both as evidence in which retrieval "
        "weighs SHARE in [0, 1] (benchmarks/bash_matched.py --mbr-retrieval chooses it on held-out rows: 0.4-0.6 "
        "for the Bash AR runs, 0.8 for CodeFusion); retrieved candidates have no score",
    )
    dec.add_argument("--batch-size", type=int, default=16, help="prompts x candidates decoded together")
    dec.add_argument(
        "--prompt-format",
        choices=["auto", "nl", "code"],
        default="auto",
        help="codegen: read prompts as NL (continue 'NL <sep>') or code; auto = as the run trained",
    )
    out = p.add_argument_group("output")
    out.add_argument("--json", action="store_true", help="print JSON (see below)")
    out.add_argument("--out", metavar="FILE.jsonl", help="write one JSONL row per candidate")
    out.add_argument(
        "--device", default="auto", choices=["auto", "cpu", "cuda", "mps"], help="default auto (CUDA when available)"
    )
    out.add_argument("--no-progress", action="store_true", help="no progress bar (shown on a terminal otherwise)")
    out.add_argument(
        "--threads",
        type=int,
        default=1,
        help="CPU intra-op threads (0 = PyTorch's default); small models are fastest on 1",
    )
    p.set_defaults(func=run)


def unescape(text: str) -> str:
    """``\\n``, ``\\t`` ... in a command-line stop string become the characters."""
    try:
        return text.encode("latin-1", "backslashreplace").decode("unicode_escape")
    except UnicodeDecodeError as e:
        raise CLIError(f"--stop {text!r}: bad escape ({e.reason})") from None


def read_prompts_file(path: str) -> list[tuple[str | None, str]]:
    """(task_id or None, prompt) per line of a plain or JSONL prompts file; DataError on bad rows."""
    from nl2code.data.records import DataError

    p = Path(path)
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(path, None, None, f"cannot read: {e}") from None
    numbered = [(i, line) for i, line in enumerate(lines, 1) if line.strip()]
    if not numbered:
        raise DataError(path, None, None, "no prompts in file")
    jsonl = p.suffix == ".jsonl" or all(line.lstrip().startswith("{") for _, line in numbered)
    if not jsonl:
        return [(None, line) for _, line in numbered]
    out = []
    for lineno, line in numbered:
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(path, lineno, None, f"invalid JSON ({e.msg})") from None
        if not isinstance(row, dict):
            raise DataError(path, lineno, None, "expected a JSON object")
        key = "prompt" if "prompt" in row else "nl" if "nl" in row else None
        if key is None or not isinstance(row[key], str):
            raise DataError(path, lineno, "prompt", "expected a string field 'prompt' (or 'nl')")
        tid = row.get("task_id")
        out.append((None if tid is None else str(tid), row[key]))
    return out


def set_threads(n: int) -> None:
    """Intra-op CPU threads; 0 keeps PyTorch's default."""
    from nl2code.utils.device import set_threads as set_torch_threads

    if n < 0:
        raise CLIError(f"--threads must be >= 0, got {n}")
    set_torch_threads(n)


# The sampler's names (nl2code.sampling.diffusion.ROUNDINGS), repeated so that --help does not import torch;
# tests/commands/test_generate_cli.py checks that the two agree.
ROUNDING_CHOICES = ("decoder", "grounding", "clamping", "decoder_clamp", "decoder_sample")
SCORE_CHOICES = ("final", "denoise")  # nl2code.sampling.diffusion.SCORES
SYNTAX_CHOICES = ("python", "bash", "cf")  # nl2code.eval.metrics.syntax.LANGUAGES
MBR_CHOICES = ("bash", "python")  # nl2code.generation.rerank.MBR_LANGUAGES


def add_rounding(group: Any) -> None:
    group.add_argument(
        "--rounding",
        choices=ROUNDING_CHOICES,
        help="diffusion: how x_0 becomes tokens; decoder_clamp = snap to D+H's tokens at every step "
        "(default for a model with a decoder: the loop then never falls far below its first step), "
        "decoder = the paper's D+H after the last step only, decoder_sample = snap to tokens drawn from D+H "
        "(argmax at the last step)",
    )


def _generation_config(args: argparse.Namespace) -> Any:
    from nl2code.api import GenerationConfig

    try:
        return GenerationConfig(
            n=args.n,
            max_new_tokens=args.max_new_tokens,
            temperature=args.temperature,
            top_k=args.top_k,
            top_p=args.top_p,
            num_beams=args.num_beams,
            stop=tuple(unescape(s) for s in args.stop),
            seed=args.seed,
            steps=args.steps,
            rounding=args.rounding,
            batch_size=args.batch_size,
            valid_stop=getattr(args, "valid_stop", None),  # infill has neither
            draws=getattr(args, "draws", 0),
            score=getattr(args, "score", None),  # infill ranks its middles by their final confidence
            guidance=getattr(args, "guidance", 1.0),
        )
    except ValueError as e:
        raise CLIError(str(e)) from None


def default_steps(gen: Any, steps: int | None) -> int | None:
    """``--steps`` when given; else a diffusion model's default (20 strided steps, at most its T)."""
    if steps is not None or getattr(gen, "kind", "") != "codefusion":
        return steps
    return gen.default_steps()


def check_settings(gen: Any, cfg: Any) -> None:
    """One-line errors, before any generation, for settings the loaded model cannot take."""
    from nl2code.api import GenerationConfig, check_config

    if cfg.steps is not None:  # checked alone first, so its error can name the flag
        try:
            check_config(gen, GenerationConfig(steps=cfg.steps))
        except ValueError as e:
            raise CLIError(f"--steps {cfg.steps}: {e}") from None
    try:
        check_config(gen, cfg)
    except ValueError as e:
        raise CLIError(str(e)) from None


def check_out_path(path: str) -> None:
    """Refuse an ``--out`` file that could not be written, before loading or generating anything."""
    p = Path(path)
    if p.is_dir():
        raise CLIError(f"--out {path}: is a directory")
    parent = p.parent
    if not parent.is_dir():
        raise CLIError(f"--out {path}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise CLIError(f"--out {path}: directory {parent} is not writable")
    if p.exists() and not os.access(p, os.W_OK):
        raise CLIError(f"--out {path}: file is not writable")


@contextlib.contextmanager
def replace_when_done(path: str) -> Iterator[Any]:
    """A text file that becomes ``path`` only when the block finishes: a failure leaves ``path`` as it was.

    A device or pipe (``/dev/stdout``) is written directly; a symlink keeps pointing at the new file.
    """
    final = Path(path)
    if final.exists() and not final.is_file():
        with open(final, "w", encoding="utf-8") as f:
            yield f
        return
    from nl2code.utils.io import atomic_path

    with atomic_path(final.resolve()) as tmp, open(tmp, "w", encoding="utf-8") as f:
        yield f


RETRIEVED_POOL = 10  # neighbours --mbr-retrieval adds (bash_matched's pool)


def mbr_ranked(
    cands: list[Any], language: str, k: int = 1, retrieved: Sequence[str] = (), share: float = 0.0
) -> list[Any]:
    """The distinct candidates (the first of each text), in minimum Bayes risk order under ``language`` (the
    first ``k`` chosen as a set: rerank.mbr); with ``retrieved`` programs, those too, under the mixture of the
    samples and them (rerank.mixture_evidence, retrieval weighing ``share``)."""
    from nl2code.generation.rerank import mbr, mbr_utility, mixture_evidence
    from nl2code.generation.types import Candidate

    samples = [c.text for c in cands]
    first = {}
    for c in [*cands, *(Candidate(t, float("nan"), {"retrieved": True}) for t in retrieved)]:
        first.setdefault(c.text, c)
    evidence = mixture_evidence(samples, retrieved, share) if retrieved else None
    return [first[t] for t in mbr([*samples, *retrieved], mbr_utility(language), evidence, k=k)]


def retrieved_for(gen: Any, prompts: list[str], args: argparse.Namespace) -> list[list[str]]:
    """Per prompt, the programs of the nearest training requests (``--mbr-retrieval``; none without it)."""
    if not getattr(args, "mbr_retrieval", 0.0):
        return [[] for _ in prompts]
    from nl2code.data.retrieval import retriever_for
    from nl2code.train.config import trained_data

    index = retriever_for(trained_data(gen.run.config))
    return [index.neighbours(p, RETRIEVED_POOL) for p in prompts]


def check_mbr(args: argparse.Namespace) -> None:
    """--mbr ranks several candidates against each other: one candidate, or --mbr-set without --mbr, is a
    mistake, not a no-op."""
    mbr, k = getattr(args, "mbr", None), getattr(args, "mbr_set", 1)
    if k < 1:
        raise CLIError(f"--mbr-set must be >= 1, got {k}")
    if k > 1 and not mbr:
        raise CLIError("--mbr-set needs --mbr LANGUAGE")
    share = getattr(args, "mbr_retrieval", 0.0)
    if not 0.0 <= share <= 1.0:
        raise CLIError(f"--mbr-retrieval must be in [0, 1], got {share}")
    if share and not mbr:
        raise CLIError("--mbr-retrieval needs --mbr LANGUAGE")
    if mbr and args.n < 2:
        raise CLIError("--mbr ranks several candidates against each other: give -n N (e.g. -n 30 --temperature 1)")


def _generate(gen: Any, prompts: list[str], cfg: Any, prompt_format: str | None) -> list[list[Any]]:
    if prompt_format is None or getattr(gen, "kind", None) != "codegen":
        return gen.generate(prompts, cfg)
    return gen.generate(prompts, cfg, prompt_format=prompt_format)


def describe_decoding(cfg: Any, kind: str | None) -> str:
    """One line saying how candidates are decoded: greedy, beam search or sampling (printed at the start)."""
    if kind != "codegen":
        steps = cfg.steps if cfg.steps is not None else "the training T"
        return f"decoding: diffusion sampling, {cfg.n} candidates per prompt, {steps} steps, seed {cfg.seed}"
    beams = max(cfg.num_beams, cfg.n) if cfg.num_beams > 1 or (cfg.temperature == 0 and cfg.n > 1) else 1
    if beams > 1:
        return (
            f"decoding: beam search with {beams} beams, the {cfg.n} best candidates per prompt "
            "(no sampling; --temperature > 0 samples instead)"
        )
    if cfg.temperature == 0:
        return "decoding: greedy, 1 candidate per prompt"
    top_k = cfg.top_k or "off"
    return (
        f"decoding: sampling at temperature {cfg.temperature} (top-k {top_k}, top-p {cfg.top_p}), "
        f"{cfg.n} candidates per prompt, seed {cfg.seed}"
    )


def _generate_all(gen: Any, prompts: list[str], cfg: Any, fmt: str | None, bar: Any) -> list[list[Any]]:
    """``_generate`` in chunks of about one batch, so a long benchmark shows progress."""
    per_chunk = max(1, cfg.batch_size // cfg.n)
    out: list[list[Any]] = []
    for start in range(0, len(prompts), per_chunk):
        chunk = prompts[start : start + per_chunk]
        out += _generate(gen, chunk, cfg, fmt)
        bar.update(len(chunk))
    return out


def _requests(args: argparse.Namespace, gen: Any) -> list[tuple[str | None, str, tuple[str, ...], str | None]]:
    """(task_id, prompt, extra stop strings, prompt format or None) for every prompt."""
    fmt = None if args.prompt_format == "auto" else args.prompt_format
    sources = sum(bool(x) for x in (args.prompts, args.prompts_file, args.benchmark))
    if sources != 1:
        raise CLIError("give prompts as arguments, or --prompts-file, or --benchmark (exactly one)")
    if args.benchmark:
        from nl2code.prompts import benchmark_prompts

        model_format = fmt or getattr(gen, "prompt_format", "nl")
        try:
            prompts = benchmark_prompts(args.benchmark, args.data, model_format, args.limit, args.seed)
        except (KeyError, ValueError) as e:
            raise CLIError(f"--benchmark {args.benchmark}: {e}") from None
        return [(b.task_id, b.prompt, b.stop, b.format) for b in prompts]
    rows = read_prompts_file(args.prompts_file) if args.prompts_file else [(None, p) for p in args.prompts]
    return [(tid, prompt, (), fmt) for tid, prompt in rows[: args.limit]]


def _mtpb(args: argparse.Namespace, gen: Any, cfg: Any) -> int:
    from nl2code.data.sources import load_source
    from nl2code.generation.mtpb import mtpb_samples

    if getattr(gen, "kind", None) != "codegen":
        raise CLIError("--benchmark mtpb needs an autoregressive (codegen) run: it continues code turn by turn")
    if not args.out:
        raise CLIError("--benchmark mtpb writes samples: give --out FILE.jsonl")
    if args.data is None:
        raise CLIError("--benchmark mtpb needs --data PATH (CodeGen's codegen1/benchmark/mtpb.jsonl)")
    try:
        cases = [int(c) for c in args.test_cases.split(",") if c.strip()]
    except ValueError:
        raise CLIError(f"bad --test-cases {args.test_cases!r}") from None
    from nl2code.utils.seed import seeded_subset

    problems = seeded_subset(load_source("mtpb", args.data).records, args.limit, args.seed)
    with replace_when_done(args.out) as f:
        for row in mtpb_samples(gen, problems, cfg, cases):
            f.write(json.dumps(row) + "\n")
    print(f"wrote {len(problems) * len(cases) * cfg.n} MTPB samples to {args.out}", file=sys.stderr)
    return 0


def run(args: argparse.Namespace) -> int:
    from nl2code.api import RunError, load_generator

    cfg = _generation_config(args)
    check_mbr(args)
    if args.limit is not None and args.limit < 1:
        raise CLIError("--limit must be >= 1")
    if args.out:
        check_out_path(args.out)
    from nl2code.utils.device import resolve_device

    try:
        set_threads(args.threads)
        gen = load_generator(args.run, resolve_device(args.device), ensemble=args.ensemble)
    except (RunError, RuntimeError) as e:
        raise CLIError(str(e)) from None
    cfg = dataclasses.replace(cfg, steps=default_steps(gen, cfg.steps))
    check_settings(gen, cfg)
    if args.benchmark == "mtpb":
        return _mtpb(args, gen, cfg)
    requests = _requests(args, gen)
    # one generate call per (stop strings, format) group, results put back in input order
    results: list[list[Any]] = [[] for _ in requests]
    groups: dict[tuple, list[int]] = {}
    for i, (_, _, stop, fmt) in enumerate(requests):
        groups.setdefault((stop, fmt), []).append(i)
    from tqdm import tqdm

    print(describe_decoding(cfg, getattr(gen, "kind", None)), file=sys.stderr, flush=True)
    show = len(requests) > 1 and not args.no_progress and sys.stderr.isatty()
    with tqdm(total=len(requests), desc="generate", unit="prompt", disable=not show) as bar:
        for (stop, fmt), idx in groups.items():
            group_cfg = dataclasses.replace(cfg, stop=tuple(cfg.stop) + stop)
            texts = [requests[i][1] for i in idx]
            near = retrieved_for(gen, texts, args)
            for i, cands, nb in zip(idx, _generate_all(gen, texts, group_cfg, fmt, bar), near, strict=True):
                if getattr(args, "mbr", None):
                    cands = mbr_ranked(cands, args.mbr, args.mbr_set, nb, args.mbr_retrieval)
                results[i] = cands
    if args.out:
        with replace_when_done(args.out) as f:
            for (tid, prompt, _, _), cands in zip(requests, results, strict=True):
                for rank, c in enumerate(cands):
                    score = c.score if math.isfinite(c.score) else None  # a retrieved program has none
                    row = {"task_id": tid, "prompt": prompt, "rank": rank, "completion": c.text, "score": score}
                    if tid is None:
                        del row["task_id"]
                    if c.extra.get("retrieved"):
                        row["retrieved"] = True
                    f.write(json.dumps(row) + "\n")
    if args.json:
        texts = [[c.text for c in cands] for cands in results]
        print(json.dumps(texts[0] if len(texts) == 1 else texts, ensure_ascii=False))
    elif not args.out:
        for i, ((_, prompt, _, _), cands) in enumerate(zip(requests, results, strict=True)):
            print(f"=== prompt {i + 1}: {prompt}")
            for rank, c in enumerate(cands):
                how = "retrieved" if c.extra.get("retrieved") else f"score {c.score:.3f}"
                print(f"--- {rank + 1} ({how})\n{c.text}")
    else:
        print(
            f"wrote {sum(len(c) for c in results)} candidates for {len(requests)} prompts to {args.out}",
            file=sys.stderr,
        )
    return 0
