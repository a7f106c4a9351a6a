"""Task registry: ``get_task(name)`` imports ``nl2code.eval.tasks.<module>`` lazily.

A module exposes either ``TASKS`` (a dict name -> task, for modules serving several names) or
``TASK`` (one instance). ``TASKS`` is looked up first.
"""

from __future__ import annotations

import importlib

from nl2code.eval.tasks.base import EvalContext, Task, TaskResult

# name -> module under nl2code.eval.tasks
TASK_MODULES: dict[str, str] = {
    "humaneval": "humaneval",
    "mbpp": "mbpp",
    "mtpb": "mtpb",
    "nl2bash": "nl2bash",
    "codefusion-bash": "nl2bash",
    "codefusion-cf": "cf_rules",
    "codefusion-python": "conala",
    "conala": "conala",
    "jsonl": "jsonl",
}

__all__ = ["TASK_MODULES", "EvalContext", "Task", "TaskResult", "get_task", "task_names"]


def task_names() -> list[str]:
    return list(TASK_MODULES)


def get_task(name: str) -> Task:
    """The task registered under ``name``; ``KeyError`` naming the known tasks otherwise."""
    if name not in TASK_MODULES:
        raise KeyError(f"unknown task {name!r}; known: {', '.join(TASK_MODULES)}")
    module = importlib.import_module(f"{__name__}.{TASK_MODULES[name]}")
    tasks = getattr(module, "TASKS", None)
    if isinstance(tasks, dict) and name in tasks:
        return tasks[name]
    task = getattr(module, "TASK", None)
    if task is None:
        raise KeyError(f"module {module.__name__} defines neither TASKS[{name!r}] nor TASK")
    return task
