"""Multi-turn generation for MTPB (CodeGen's multi-turn programming benchmark).

Follows CodeGen's ``mtpb_sample.py``: the history starts with ``# Import libraries.`` and
``import numpy as np``; each turn appends ``# {prompt}\\n`` (the turn template filled with the test
case's inputs), the model continues the history, the continuation is truncated the benchmark's way,
and ``truncated + "\\n\\n"`` is appended before the next turn. Each of the ``n`` samples keeps its
own history. Rows are written in the format ``nl2code eval mtpb`` reads:
``{"task_id", "test_case", "completions": [one per turn], "sample"}``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from typing import Any

from nl2code.data.records import Record
from nl2code.eval.tasks.mtpb import N_CASES, PREFIX, truncate, turn_prompts
from nl2code.utils.seed import derive_seed

# Where truncate() would cut anyway; stopping there early saves tokens (a first print/def is kept).
MTPB_STOP = ("\n#", "\n\n\n", "\n'''", '\n"""')


def mtpb_samples(
    generator: Any, problems: Iterable[Record], cfg: Any, test_cases: Iterable[int] = range(N_CASES)
) -> Iterator[dict]:
    """Yield one row per (problem, test case, sample).

    Args:
        generator: an :class:`~nl2code.sampling.autoregressive.ARGenerator` (code continuation).
        problems: MTPB records (``load_source("mtpb", path)``).
        cfg: an ``api.GenerationConfig``; ``n`` samples per test case. Each turn generates at
            most the problem's ``max_gen_length`` tokens (``cfg.max_new_tokens`` when absent).
        test_cases: which of the five test cases to generate for.
    """
    cases = list(test_cases)
    for p_index, problem in enumerate(problems):
        budget = int(problem.extras.get("max_gen_length") or cfg.max_new_tokens)
        for case in cases:
            histories = [PREFIX] * cfg.n
            completions: list[list[str]] = [[] for _ in range(cfg.n)]
            for turn, prompt in enumerate(turn_prompts(problem, case)):
                histories = [h + f"# {prompt}\n" for h in histories]
                turn_cfg = dataclasses.replace(
                    cfg, n=1, max_new_tokens=budget, stop=tuple(cfg.stop) + MTPB_STOP,
                    seed=derive_seed(cfg.seed, p_index, case, turn),
                )
                outputs = generator.generate(histories, turn_cfg, prompt_format="code")
                for j, candidates in enumerate(outputs):
                    text = truncate(candidates[0].text)
                    completions[j].append(text)
                    histories[j] += text + "\n\n"
            for j in range(cfg.n):
                yield {"task_id": problem.task_id, "test_case": case, "completions": completions[j], "sample": j}
