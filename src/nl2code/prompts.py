"""Benchmark prompts for generation, in the formats the models were trained on.

* NL -> code benchmarks (CodeFusion's Bash, Python/CoNaLa and CF rules; NL2Bash; CoNaLa; your own
  ``jsonl`` pairs): the
  prompt is the utterance alone. An ``nl_code`` model continues ``NL <sep>`` (exactly the
  ``NL <sep> code <eos>`` sequences ``data.format: nl_code`` trains on, so AR and diffusion
  models see identical data) and a CodeFusion model encodes it. A code-only model gets
  ``# NL\\n`` and stops at the end of the line.
* HumanEval: the problem's own prompt (signature + docstring), continued as code; the Codex stop
  strings end the function.
* MBPP: the description plus the first test (it names the function); an ``nl_code`` model reads
  it as NL, a code model gets it as a docstring (bigcode-harness style). The completion is the
  whole program, as the MBPP task expects.

Prompts come from each eval task's own loader, so task ids always match ``nl2code eval``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from nl2code.data.records import Record
from nl2code.utils.seed import seeded_subset

PromptFormat = Literal["nl", "code"]

# Codex paper (Chen et al. 2021): a new top-level statement ends a HumanEval completion.
HUMANEVAL_STOP = ("\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#")
MBPP_CODE_STOP = ("\nclass ", "\nif __name__", "\nprint(", "\nassert ", '\n"""')
NL_TASKS = ("codefusion-bash", "codefusion-python", "codefusion-cf", "nl2bash", "conala", "jsonl")


@dataclass(frozen=True)
class BenchmarkPrompt:
    """One generation request for a benchmark problem.

    Attributes:
        task_id: the eval task's id for the problem (what ``nl2code eval`` matches samples by).
        prompt: the text handed to the generator.
        format: ``nl`` (an utterance) or ``code`` (text to continue).
        stop: strings that end a completion (on top of the model's end-of-sequence token).
    """

    task_id: str
    prompt: str
    format: PromptFormat
    stop: tuple[str, ...] = ()


def nl_prompt(rec: Record, model_format: PromptFormat) -> BenchmarkPrompt:
    """An NL -> code problem: the utterance (``# utterance`` + one line for code-only models)."""
    if model_format == "nl":
        return BenchmarkPrompt(rec.task_id, rec.nl, "nl")
    return BenchmarkPrompt(rec.task_id, f"# {rec.nl}\n", "code", ("\n",))


def humaneval_prompt(rec: Record) -> BenchmarkPrompt:
    """HumanEval: continue the function whose signature and docstring are the prompt."""
    return BenchmarkPrompt(rec.task_id, rec.extras["prompt"], "code", HUMANEVAL_STOP)


def mbpp_prompt(rec: Record, model_format: PromptFormat) -> BenchmarkPrompt:
    """MBPP: the description and the first test; the completion is a whole program."""
    test = rec.extras["test_list"][0] if rec.extras.get("test_list") else ""
    if model_format == "nl":
        return BenchmarkPrompt(rec.task_id, f"{rec.nl}\n{test}".strip(), "nl")
    return BenchmarkPrompt(rec.task_id, f'"""\n{rec.nl}\n{test}\n"""\n', "code", MBPP_CODE_STOP)


def benchmark_prompts(
    task: str,
    data_path: str | None = None,
    model_format: PromptFormat = "nl",
    limit: int | None = None,
    seed: int = 0,
) -> list[BenchmarkPrompt]:
    """Prompts for every problem of eval task ``task`` (see ``nl2code eval --help`` for names).

    Args:
        data_path: the task's data (as ``nl2code eval --data``); None = the task's default.
        model_format: how the model reads prompts (``ARGenerator.prompt_format``; ``nl`` for
            CodeFusion).
        limit: only ``limit`` problems, drawn at random with ``seed`` (in file order; never a prefix).
    """
    from nl2code.eval.tasks import get_task

    if task == "mtpb":
        raise ValueError("MTPB is multi-turn: use nl2code.generation.mtpb.mtpb_samples")
    problems = seeded_subset(list(get_task(task).load_problems(data_path).values()), limit, seed)
    if task == "humaneval":
        return [humaneval_prompt(r) for r in problems]
    if task == "mbpp":
        return [mbpp_prompt(r, model_format) for r in problems]
    if task in NL_TASKS:
        return [nl_prompt(r, model_format) for r in problems]
    raise ValueError(f"no prompt builder for task {task!r} (known: humaneval, mbpp, mtpb, {', '.join(NL_TASKS)})")
