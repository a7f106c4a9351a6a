"""NL2Bash tasks: "nl2bash" (all.nl / all.cm) and "codefusion-bash" (CodeFusion's Bash test split).

* ``nl2bash``: NL2Bash ships no usable test split (its README split is not reproducible from the
  files, evaluation.md §3.1), so **every** pair (12,607) is a problem. Problems without samples
  count as wrong, so a run on a subset reports its share of all pairs (``problems_without_samples``
  in summary.json says how many); ``codefusion-bash`` is CodeFusion's 2,522-row test split.
* As in NL2Bash, gold commands are grouped by description: a candidate is right when it matches any
  gold command of a problem with the same description (within the task's problems). "Same" is
  ``EvalContext.bash_group`` (``nl2code eval --bash-group``): ``exact`` (default) compares the NL
  text stripped of surrounding whitespace; ``normalized`` compares :func:`nl_key`, our version of the
  official scorer's key (``eval/eval_tools.py`` ``get_example_nl_key``, which groups by
  ``nlp_tools/tokenizer.py`` ``basic_tokenizer``), so that e.g. "Find all *.txt files." and "find all
  *.txt file" share their golds. Metrics stay means over test rows (the official scorer averages over
  groups); ``problems_with_several_golds`` in summary.json says how many rows share golds.

Metrics (:mod:`nl2code.eval.metrics.bash_template`, :mod:`nl2code.eval.metrics.cms`,
:mod:`nl2code.eval.metrics.nlc2cmd`), each a fraction in [0, 1]:
``template_match@k`` (exact template accuracy), ``cms@k`` (command match score, NL2Bash's "TM" column
and the metric of CodeFusion's Bash numbers: per problem the best over its first k candidates, each
candidate scoring its best over the grouped golds, 0 without candidates), ``command_match@k``
(whitespace-normalised full command), ``nlc2cmd`` (first 5 candidates, competition aggregation; a
candidate scores its best over the grouped golds) and ``nlc2cmd@k``, ``syntax_valid`` (fraction of
candidates tree-sitter-bash parses), diversity over the first max(k) candidates.
"""

from __future__ import annotations

import re
import time
from collections import defaultdict

from nl2code.data.records import Record
from nl2code.eval.metrics.bash_template import analyse, command_match, template_match
from nl2code.eval.metrics.cms import cms_best, cms_topk
from nl2code.eval.metrics.nlc2cmd import nlc2cmd_aggregate, nlc2cmd_score
from nl2code.eval.tasks._text import diversity_metrics, load_split, missing_note, prefixed_id, topk_metrics
from nl2code.eval.tasks.base import EvalContext, TaskResult

__all__ = ["BASH_GROUPS", "BashTask", "TASKS", "gold_report", "nl_key"]

NLC2CMD_CANDIDATES = 5
BASH_GROUPS = ("exact", "normalized")  # EvalContext.bash_group: how gold commands are grouped by NL

# Words the official key leaves out (pronouns, auxiliaries, "the"; it keeps "a", "an", "is", "in" ...).
_NL_STOPWORDS = frozenset([
    "the", "has", "have", "had", "here", "there", "do", "does", "did", "doing", "how", "i", "i'd", "i'll",
    "i'm", "i've", "me", "my", "myself", "can", "could", "must", "should", "would", "you", "you'd",
    "you'll", "you're", "you've", "your", "yours", "yourself", "yourselves", "he", "he'd", "he'll", "he's",
    "her", "here's", "hers", "herself", "him", "himself", "his", "she", "she'd", "she'll", "she's", "it's",
    "itself", "we", "we'd", "we'll", "we're", "we've", "their", "theirs", "themselves", "then", "there's",
    "they", "they'd", "they'll", "they're", "they've", "let", "let's", "this", "what's", "how's",
])  # fmt: skip
# Number words as digits ("one" stays a word: it is as often a pronoun).
_NUMBER_WORDS = {
    "zero": "0", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6", "seven": "7", "eight": "8",
    "nine": "9", "ten": "10", "eleven": "11", "twelve": "12", "thirteen": "13", "fourteen": "14",
    "fifteen": "15", "sixteen": "16", "seventeen": "17", "eighteen": "18", "nineteen": "19", "twenty": "20",
    "thirty": "30", "forty": "40", "fifty": "50", "sixty": "60", "seventy": "70", "eighty": "80",
    "ninety": "90", "hundred": "100", "thousand": "1000",
}  # fmt: skip
_NL_TOKEN = re.compile(r"""'[^']*'|"[^"]*"|[^\s"]+""")
_ENGLISH = re.compile(r"[A-Za-z][a-z]*(-[a-z]+)*", re.IGNORECASE)
_SYMBOL = re.compile(r"[_.*|\\/~@%#?+${}<>]")


def _stem(word: str) -> str:
    """A light English stemmer standing in for Snowball: inflections of one word share a stem
    (files/file -> fil, directories/directory -> directory, named/naming/name -> nam)."""
    w = word
    if len(w) <= 3:
        return w
    if w.endswith("sses"):
        w = w[:-2]
    elif w.endswith(("ies", "ied")) and len(w) > 4:
        w = w[:-3] + "y"
    elif re.search(r"(sh|ch|x|z)es$", w):
        w = w[:-2]
    elif w.endswith("s") and not w.endswith(("ss", "us", "is")):
        w = w[:-1]
    elif w.endswith(("ing", "ed")):
        stem = w[:-3] if w.endswith("ing") else w[:-2]
        if len(stem) >= 3 and re.search("[aeiouy]", stem):
            if len(stem) > 3 and stem[-1] == stem[-2] and stem[-1] not in "lsz":
                stem = stem[:-1]  # running -> run
            w = stem
    if w.endswith("ly") and len(w) > 5:
        w = w[:-2]
    if w.endswith("e") and len(w) > 3:
        w = w[:-1]
    return w


def nl_key(nl: str) -> str:
    """A description with its nuances removed, to group gold commands (``--bash-group normalized``).

    After the official NL2Bash key (``get_example_nl_key`` = ``basic_tokenizer``; definition read
    there, implemented here): text in parentheses dropped; typographic quotes as ASCII; ``,`` ``;``
    ``:`` ``.`` before a space or at the end dropped; a leading "to " dropped; words split on spaces
    with quoted strings kept whole; English words lower-cased; a few pronouns/auxiliaries and "the"
    dropped; number words as digits; words without symbols stemmed. Not reproduced: the official
    spelling correction (it needs its word-frequency file) and Snowball stemming (a lighter stemmer
    here), so a few descriptions the official key merges stay apart.
    """
    text = re.sub(r"\([^)]*\)", "", nl)
    for bad, good in (("“", '"'), ("”", '"'), ("‘", "'"), ("’", "'")):
        text = text.replace(bad, good)
    text = re.sub(r"[,;:.](\s+|$)", " ", text)
    text = re.sub(r"^\s*[Tt]o ", "", text)
    words = []
    for word in _NL_TOKEN.findall(text):
        quoted = word[:1] in "\"'" and word[-1:] in "\"'" and len(word) > 1
        if not quoted and _ENGLISH.fullmatch(word):
            word = word.lower()
        if word.lower() in _NL_STOPWORDS:
            continue
        word = _NUMBER_WORDS.get(word, word)
        if not quoted and not _SYMBOL.search(word):
            word = _stem(word)
        if word.strip():
            words.append(word)
    return " ".join(words)


def group_key(nl: str, mode: str) -> str:
    """The key gold commands are grouped by: the stripped text (``exact``) or :func:`nl_key`."""
    if mode not in BASH_GROUPS:
        raise ValueError(f"bash_group must be one of {BASH_GROUPS}, not {mode!r}")
    return nl.strip() if mode == "exact" else nl_key(nl)


class BashTask:
    executes_code = False  # scored from the text alone

    def __init__(self, name: str, source: str, split: str | None, example: str):
        self.name, self.source, self.split, self.example = name, source, split, example

    def load_problems(self, data_path: str | None) -> dict[str, Record]:
        return load_split(self.name, self.source, data_path, self.split, self.example)

    def normalize_task_id(self, task_id: object) -> str:
        return prefixed_id(self.source, task_id)

    def judge(self, problems: dict[str, Record], samples: dict[str, list[str]], ctx: EvalContext) -> TaskResult:
        mode = ctx.bash_group
        keys = {tid: group_key(p.nl, mode) for tid, p in problems.items()}
        by_nl: dict[str, list[str]] = defaultdict(list)
        for tid, p in problems.items():
            by_nl[keys[tid]].append(p.code.rstrip("\n"))
        rows: list[dict] = []
        template: dict[str, list[bool]] = {}
        command: dict[str, list[bool]] = {}
        nlc: dict[str, list[float]] = {}
        cmss: dict[str, list[float]] = {}
        parsed = total = 0
        for tid in problems:
            golds = by_nl[keys[tid]]
            template[tid], command[tid], nlc[tid], cmss[tid] = [], [], [], []
            for rank, cand in enumerate(samples.get(tid, [])):
                a = analyse(cand)
                total += 1
                parsed += a.parsed
                tm = any(template_match(cand, g) for g in golds)
                cm = any(command_match(cand, g) for g in golds)
                score = max(nlc2cmd_score(cand, g) for g in golds)
                c = cms_best(cand, golds)
                template[tid].append(tm)
                command[tid].append(cm)
                nlc[tid].append(score)
                cmss[tid].append(c)
                rows.append({
                    "task_id": tid, "rank": rank, "completion": cand, "matched": tm, "command_match": cm,
                    "cms": c, "nlc2cmd": score, "parsed": a.parsed, "template": " ".join(a.template),
                    "reason": "" if tm else ("does not parse" if not a.parsed else "different template"),
                })  # fmt: skip
        ids = list(problems)
        metrics = topk_metrics("template_match", template, ctx.ks, ids)
        for k in ctx.ks:
            metrics[f"cms@{k}"] = sum(cms_topk(cmss[t], k) for t in ids) / len(ids)
        metrics |= topk_metrics("command_match", command, ctx.ks, ids)
        metrics["nlc2cmd"] = sum(nlc2cmd_aggregate(nlc[t][:NLC2CMD_CANDIDATES]) for t in ids) / len(ids)
        for k in ctx.ks:
            metrics[f"nlc2cmd@{k}"] = sum(nlc2cmd_aggregate(nlc[t][:k]) for t in ids) / len(ids)
        metrics["syntax_valid"] = parsed / total if total else 0.0
        div, n_div = diversity_metrics(samples, max(ctx.ks))
        metrics |= div
        extra = missing_note(problems, samples) | {
            "bash_group": mode,
            "problems_with_several_golds": sum(len(by_nl[keys[t]]) > 1 for t in ids),
            "gold_parse_rate": sum(analyse(p.code.rstrip("\n")).parsed for p in problems.values()) / len(ids),
            "diversity_problems": n_div,
            "nlc2cmd_note": "missing candidates score -1; up to 5 candidates per problem",
            "cms_note": "command match score (NL2Bash's TM, CodeFusion's Bash metric): cosine of bags of "
            "utilities and flags with argument types, arguments ignored; best over the first k candidates",
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
