"""NL2Bash tasks: "nl2bash" (all.nl / all.cm) and "codefusion-bash" (CodeFusion's Bash test split).

* ``nl2bash``: NL2Bash ships no usable test split (its README split is not reproducible from the
  files, evaluation.md §3.1), so **every** pair (12,607) is a problem. Problems without samples
  count as wrong, so a run on a subset reports its share of all pairs (``problems_without_samples``
  in summary.json says how many); ``codefusion-bash`` is CodeFusion's 2,522-row test split.
* As in NL2Bash, gold commands are grouped by description: a candidate is right when it matches any
  gold command of a problem whose NL text is identical (within the task's problems).

Metrics (:mod:`nl2code.eval.metrics.bash_template`, :mod:`nl2code.eval.metrics.nlc2cmd`):
``template_match@k``, ``command_match@k`` (whitespace-normalised full command), ``nlc2cmd`` (first 5
candidates, competition aggregation; a candidate scores its best over the grouped golds) and
``nlc2cmd@k``, ``syntax_valid`` (fraction of candidates tree-sitter-bash parses), diversity over
the first max(k) candidates.
"""

from __future__ import annotations

import time
from collections import defaultdict

from nl2code.data.records import Record
from nl2code.eval.metrics.bash_template import analyse, command_match, template_match
from nl2code.eval.metrics.nlc2cmd import nlc2cmd_aggregate, nlc2cmd_score
from nl2code.eval.tasks._text import diversity_metrics, load_split, missing_note, prefixed_id, topk_metrics
from nl2code.eval.tasks.base import EvalContext, TaskResult

__all__ = ["BashTask", "TASKS", "gold_report"]

NLC2CMD_CANDIDATES = 5


class BashTask:
    def __init__(self, name: str, source: str, split: str | None, example: str):
        self.name, self.source, self.split, self.example = name, source, split, example

    def load_problems(self, data_path: str | None) -> dict[str, Record]:
        return load_split(self.name, self.source, data_path, self.split, self.example)

    def normalize_task_id(self, task_id: object) -> str:
        return prefixed_id(self.source, task_id)

    def judge(self, problems: dict[str, Record], samples: dict[str, list[str]], ctx: EvalContext) -> TaskResult:
        by_nl: dict[str, list[str]] = defaultdict(list)
        for p in problems.values():
            by_nl[p.nl.strip()].append(p.code.rstrip("\n"))
        rows: list[dict] = []
        template: dict[str, list[bool]] = {}
        command: dict[str, list[bool]] = {}
        nlc: dict[str, list[float]] = {}
        parsed = total = 0
        for tid, problem in problems.items():
            golds = by_nl[problem.nl.strip()]
            template[tid], command[tid], nlc[tid] = [], [], []
            for rank, cand in enumerate(samples.get(tid, [])):
                a = analyse(cand)
                total += 1
                parsed += a.parsed
                tm = any(template_match(cand, g) for g in golds)
                cm = any(command_match(cand, g) for g in golds)
                score = max(nlc2cmd_score(cand, g) for g in golds)
                template[tid].append(tm)
                command[tid].append(cm)
                nlc[tid].append(score)
                rows.append({
                    "task_id": tid, "rank": rank, "completion": cand, "matched": tm, "command_match": cm,
                    "nlc2cmd": score, "parsed": a.parsed, "template": " ".join(a.template),
                    "reason": "" if tm else ("does not parse" if not a.parsed else "different template"),
                })  # fmt: skip
        ids = list(problems)
        metrics = topk_metrics("template_match", template, ctx.ks, ids)
        metrics |= topk_metrics("command_match", command, ctx.ks, ids)
        metrics["nlc2cmd"] = sum(nlc2cmd_aggregate(nlc[t][:NLC2CMD_CANDIDATES]) for t in ids) / len(ids)
        for k in ctx.ks:
            metrics[f"nlc2cmd@{k}"] = sum(nlc2cmd_aggregate(nlc[t][:k]) for t in ids) / len(ids)
        metrics["syntax_valid"] = parsed / total if total else 0.0
        div, n_div = diversity_metrics(samples, max(ctx.ks))
        metrics |= div
        extra = missing_note(problems, samples) | {
            "problems_with_several_golds": sum(len(by_nl[p.nl.strip()]) > 1 for p in problems.values()),
            "gold_parse_rate": sum(analyse(p.code.rstrip("\n")).parsed for p in problems.values()) / len(ids),
            "diversity_problems": n_div,
            "nlc2cmd_note": "missing candidates score -1; up to 5 candidates per problem",
        }
        return TaskResult(rows, metrics, extra)


TASKS = {
    "nl2bash": BashTask("nl2bash", "nl2bash", None, "the folder with all.nl and all.cm, e.g. ../shared/data/nl2bash"),
    "codefusion-bash": BashTask(
        "codefusion-bash",
        "codefusion-bash",
        "test",
        "BashBenchmarks.json, e.g. ../shared/data/codefusion/benchmarks/BashBenchmarks.json",
    ),
}


def gold_report(data_path: str) -> dict:
    """Parse rate of the NL2Bash gold commands and the self-match rate of their templates."""
    from nl2code.data.sources import load_source

    start = time.monotonic()
    result = load_source("nl2bash", data_path)
    commands = [r.code for r in result.records]
    analyses = [analyse(c) for c in commands]
    unparsed = [c for c, a in zip(commands, analyses, strict=True) if not a.parsed]
    self_match = sum(template_match(c, c) for c in commands)
    return {
        "commands": len(commands),
        "dropped": dict(result.dropped),
        "parsed": len(commands) - len(unparsed),
        "parse_rate": (len(commands) - len(unparsed)) / len(commands) if commands else 0.0,
        "self_match": self_match,
        "self_match_rate": self_match / len(commands) if commands else 0.0,
        "distinct_templates": len({a.template for a in analyses}),
        "unparsed_examples": unparsed[:10],
        "seconds": round(time.monotonic() - start, 2),
    }
