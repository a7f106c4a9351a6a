"""The contract between the evaluation harness and each task (HumanEval, MBPP, NL2Bash, ...).

A task loads its problems, and judges a set of ranked candidates per problem into per-sample rows
and named metrics. Execution-based tasks run code only through ``nl2code.eval.sandbox``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from nl2code.errors import UserError

if TYPE_CHECKING:
    from nl2code.data.records import Record


class TaskError(UserError):
    """A task cannot start: e.g. its data file was not given or holds no records."""


CF_SEMANTICS = ("excel", "labels")  # how codefusion-cf executes rules; see tasks/cf_rules.py


@dataclass
class EvalContext:
    """Settings every task's ``judge`` receives."""

    ks: list[int]  # e.g. [1, 3, 5]
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)  # parallel sandbox workers
    timeout_factor: float = 3.0  # per-task timeout = max(factor * reference runtime, floor)
    timeout_floor: float = 3.0  # seconds
    progress: bool = True  # show a tqdm bar
    isolation: str | None = None  # sandbox level for generated code; None = the default (see eval.sandbox)
    cf_semantics: str = "excel"  # codefusion-cf, one of CF_SEMANTICS: Excel's, or the train labels' conventions
    bash_group: str = "exact"  # nl2bash tasks: group gold commands by identical NL ("exact") or its key ("normalized")


@dataclass
class TaskResult:
    """What ``judge`` returns.

    Attributes:
        results: one row per (task_id, rank) sample: at least ``task_id``, ``rank``, ``completion``,
            plus task-specific fields (``passed``/``matched`` bool, ``reason`` str, scores ...).
        metrics: by name: ``"pass@1"``, ``"template_match@1"``, ``"execution_match@5"``, ``"bleu"`` ...
        extra: anything else for summary.json (counts, isolation level, notes).
    """

    results: list[dict]
    metrics: dict[str, float]
    extra: dict = field(default_factory=dict)


class Task(Protocol):
    """One benchmark. Modules under ``nl2code.eval.tasks`` expose an instance as ``TASK`` (or ``TASKS``)."""

    name: str

    def load_problems(self, data_path: str | None) -> dict[str, Record]:
        """task_id -> Record of the evaluation (test) split."""
        ...

    def judge(self, problems: dict[str, Record], samples: dict[str, list[str]], ctx: EvalContext) -> TaskResult:
        """Score ``samples`` (task_id -> candidates in rank order) against ``problems``."""
        ...
