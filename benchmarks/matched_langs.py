"""The benchmarks of benchmarks/bash_matched.py: the paper's three languages, their data splits, scored
metrics, constant answers and recipes (issue #18)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _common import DATA

BENCHES = DATA / "codefusion" / "benchmarks"
KS = [1, 3, 5]


@dataclass(frozen=True)
class Language:
    """One benchmark of the paper: its file, task (also the data source), scored metrics and recipes."""

    bench: Path
    task: str
    metrics: tuple[str, ...]  # reported @1/3/5
    paper: dict[str, float]  # codefusion.md: 75M CodeFusion, pre-trained CodeT5 encoder, 4xV100
    systems: dict[str, str]  # name -> committed recipe
    splits: tuple[str, ...]
    extras: tuple[str, ...] = ("syntax_valid",)  # reported once (first candidates, or all 5 judged for syntax)
    link: bool = False  # CF: also judge every candidate with its implicit column bound to the table's (link.py)
    # also judge with candidates that behave as an earlier one does moved back (CF: format the row's table alike;
    # Bash: the same bag of utilities and typed flags, so the same CMS against any gold)
    distinct: bool = False
    mbr: bool = False  # has a metric minimum Bayes risk ranks samples by (``--mbr``; :func:`utility_of`)

    @property
    def pool(self) -> int:
        """Candidates retrieval and the AR valid-stop search give per row: the first 5 are judged; with
        ``distinct`` 10, so the reordering steps have more to choose from (the rows as generated are the same).
        CodeFusion keeps 5 (its first 5 of 10 draws would be a different sample)."""
        return 10 if self.distinct else max(KS)

    @property
    def syntax(self) -> str:
        """The language's name for syntax checks (nl2code.eval.metrics.syntax) and file names: bash, cf, python."""
        return self.task.removeprefix("codefusion-")


LANGUAGES = {
    "bash": Language(
        BENCHES / "BashBenchmarks.json", "codefusion-bash", ("cms", "template_match"),
        {"cms@1": 66.7, "cms@5": 72.0},
        {"codefusion": "configs/codefusion/bash_ft.yaml", "codefusion_rag": "configs/codefusion/bash_rag.yaml",
         "codefusion_pt": "configs/codefusion/bash_pt.yaml",
         "ar": "configs/codegen/bash_cpu.yaml", "ar_rag": "configs/codegen/bash_cpu_rag.yaml",
         "ar_pt": "configs/codegen/bash_cpu_pt.yaml", "ar_rag_pt": "configs/codegen/bash_cpu_rag_pt.yaml"},
        ("paper", "grouped"), distinct=True, mbr=True,
    ),
    "cf": Language(
        BENCHES / "CFRuleBenchmarks.json", "codefusion-cf", ("execution_match", "exact_match"),
        {"execution_match@1": 72.8, "execution_match@5": 78.5},
        {"codefusion": "configs/codefusion/cf_ft.yaml", "ar": "configs/codegen/cf_cpu.yaml",
         "codefusion_pt": "configs/codefusion/cf_pt.yaml"},
        ("paper", "grouped"), link=True, distinct=True, mbr=True,
    ),
    "python": Language(  # the paper scores CodeBERTScore (80.7 / 90.3), which needs an encoder not on this machine
        BENCHES / "PythonBenchmarks.json", "codefusion-python", ("exact_match",), {},
        {"codefusion": "configs/codefusion/python_ft.yaml", "ar": "configs/codegen/python_cpu.yaml"},
        ("paper", "grouped"), ("syntax_valid", "bleu", "codebleu"), mbr=True,
    ),
}  # fmt: skip
UNSCALED = {"bleu"}  # already x100 (CoNaLa's BLEU); every other metric is a fraction shown as a percentage


def utility_of(lang: Language, problem: Any = None) -> Callable[[str, str], float]:
    """The language's MBR utility for one request (nl2code.generation.rerank): Bash CMS and Python sentence BLEU
    (mbr_utility; ``problem`` is not read); CF execution agreement on the request's own table, each rule first
    bound to the column the request names (execution_utility over column linking: the formatting the judged,
    linked candidate gives)."""
    from nl2code.generation.rerank import execution_utility, mbr_utility

    if not lang.mbr:
        raise ValueError(f"{lang.task}: no MBR utility")
    if lang.task != "codefusion-cf":
        return mbr_utility(lang.syntax)
    if problem is None:
        raise ValueError(f"{lang.task}: the MBR utility runs rules on the request's table: pass the problem")
    from nl2code.eval.cf.link import link_columns

    table, formatting = problem.extras["table"], cf_result(problem.extras["table"])
    return execution_utility(lambda rule: formatting(link_columns(rule, problem.nl, table)))


def columns(lang: Language) -> list[str]:
    """The score names a language reports: its metrics @1/3/5, then its extras (syntax validity, BLEU, ...)."""
    return [f"{m}@{k}" for m in lang.metrics for k in KS] + list(lang.extras)


def percents(scores: dict[str, float], keys: list[str]) -> list[Any]:
    """``scores`` at ``keys`` as table cells: fractions as percentages (UNSCALED ones as they are), "" if absent."""
    return [round(scores[k] * (1 if k in UNSCALED else 100), 1) if k in scores else "" for k in keys]


def judge(lang: Language, problems: dict[str, Any], samples: dict[str, list[str]]) -> dict[str, float]:
    """The language's metrics @1/3/5 (and syntax validity where the task reports it) of the first 5 of
    ``samples``' candidates."""
    from nl2code.eval.tasks import EvalContext, get_task

    top = {t: cands[: max(KS)] for t, cands in samples.items()}
    res = get_task(lang.task).judge(problems, top, EvalContext(ks=KS, workers=1, progress=False))
    return {m: res.metrics[m] for m in columns(lang) if m in res.metrics}


LINKED, VALID, DISTINCT = " + column linking", " + valid first", " + distinct results"
VALUES = " + value linking"


def linked(problems: dict[str, Any], samples: dict[str, list[str]]) -> dict[str, list[str]]:
    """CF candidates with their implicit column bound to the one the request names in the row's table."""
    from nl2code.eval.cf.link import link_columns

    return {
        t: [link_columns(c, problems[t].nl, problems[t].extras["table"]) for c in cands] for t, cands in samples.items()
    }


def values_linked(problems: dict[str, Any], samples: dict[str, list[str]]) -> dict[str, list[str]]:
    """CF candidates with the literals their request does not contain replaced by the values it spells out
    (nl2code.eval.cf.values: the edit step of retrieve-and-edit; no gold is read)."""
    from nl2code.eval.cf.values import link_values

    return {t: [link_values(c, problems[t].nl) for c in cands] for t, cands in samples.items()}


def valid_first(lang: Language, problems: dict[str, Any], samples: dict[str, list[str]]) -> dict[str, list[str]]:
    """Each row's candidates reordered, valid ones first (execution-guided decoding, Wang et al. 2018): CF rules
    that parse and run on the row's table, Python that parses, Bash that bashlex parses. The set is unchanged."""
    from nl2code.eval.metrics.syntax import syntax_valid
    from nl2code.generation.rerank import valid_first as reorder

    def check(t: str) -> Callable[[str], bool]:
        if lang.task == "codefusion-cf":
            formatting = cf_result(problems[t].extras["table"])
            return lambda c: formatting(c) is not None
        return lambda c: syntax_valid(c, lang.syntax)

    return {t: reorder(cands, check(t)) for t, cands in samples.items()}


def distinct_results(lang: Language, problems: dict[str, Any], samples: dict[str, list[str]]) -> dict[str, list[str]]:
    """Candidates with those that behave as an earlier candidate does moved behind the rest
    (nl2code.generation.rerank.execution_distinct); no gold is read. CF: the formatting of the request's own
    table; Bash: the command's CMS bag (utilities, typed flags, structure), so two commands that differ only in
    their arguments count once and the top 5 hold 5 different commands where the pool has them."""
    from nl2code.generation.rerank import execution_distinct

    if lang.task == "codefusion-cf":
        return {t: execution_distinct(cands, cf_result(problems[t].extras["table"])) for t, cands in samples.items()}
    from nl2code.eval.metrics.cms import content_bag

    def bag(c: str) -> frozenset | None:
        return frozenset(content_bag(c).items()) or None

    return {t: execution_distinct(cands, bag) for t, cands in samples.items()}


_RESULTS: dict[int, tuple[Any, dict[str, Any]]] = {}  # id(table) -> (the table, rule -> its formatting)


def cf_result(table: Any) -> Callable[[str], Any]:
    """A CF rule -> its formatting of ``table`` (None when it does not parse or run); each rule runs once per
    table however many steps ask (valid first and distinct results ask about the same candidates)."""
    from nl2code.eval.tasks.cf_rules import run_rule

    held = _RESULTS.get(id(table))
    if held is None or held[0] is not table:  # the table is kept, so its id is never reused while cached
        held = _RESULTS[id(table)] = (table, {})
    memo = held[1]

    def result(rule: str) -> Any:
        if rule not in memo:
            memo[rule] = run_rule(rule, table)[0]
        return memo[rule]

    return result


Transform = Callable[[dict[str, Any], dict[str, list[str]]], dict[str, list[str]]]


def steps(lang: Language, values: bool = False) -> list[tuple[str, Transform]]:
    """The steps each system and baseline is also judged after, in order, each on the previous step's output:
    CF: column linking, valid first, then distinct results (``values``: value linking after column linking);
    Bash: valid first, distinct results; Python: valid first."""
    chain = [(LINKED, linked)] if lang.link else []
    chain += [(VALUES, values_linked)] if values else []
    chain.append((VALID, lambda p, s: valid_first(lang, p, s)))
    return chain + ([(DISTINCT, lambda p, s: distinct_results(lang, p, s))] if lang.distinct else [])


def chains(lang: Language) -> list[list[tuple[str, Transform]]]:
    """The step chains judged: :func:`steps`, and for CF also the chain with value linking (its own rows, so the
    rows without it stay comparable with earlier results)."""
    return [steps(lang)] + ([steps(lang, values=True)] if lang.link else [])


def _links(lang: Language) -> list[tuple[str, str, Transform]]:
    """(label before, label after, step) of every step of :func:`chains`, each label once, in order: a step shared
    by two chains' prefixes appears once."""
    out: list[tuple[str, str, Transform]] = []
    seen = {""}
    for chain in chains(lang):
        label = ""
        for suffix, step in chain:
            if label + suffix not in seen:
                seen.add(label + suffix)
                out.append((label, label + suffix, step))
            label += suffix
    return out


def variants(lang: Language) -> dict[str, Transform]:
    """Label suffix -> the candidates after the steps up to it ("" = as generated)."""
    out: dict[str, Transform] = {"": lambda p, s: s}
    for before, label, step in _links(lang):
        out[label] = lambda p, s, before=out[before], step=step: step(p, before(p, s))
    return out


def judge_variants(lang: Language, problems: dict[str, Any], samples: dict[str, list[str]]) -> dict[str, dict]:
    """Label suffix -> scores: the candidates as generated ("") and after each step of each of :func:`chains` in
    turn (each step runs once, on the previous step's output)."""
    done: dict[str, dict[str, list[str]]] = {"": samples}
    out = {"": judge(lang, problems, samples)}
    for before, label, step in _links(lang):
        done[label] = step(problems, done[before])
        out[label] = judge(lang, problems, done[label])
    return out


def constant_answer(lang: Language, train: list[Any]) -> str:
    """Bash: the issue's constant command; otherwise the most frequent train program (CF, Python)."""
    from bash_baselines import CONSTANT

    return CONSTANT if lang.task == "codefusion-bash" else Counter(r.code for r in train).most_common(1)[0][0]


def add_row_args(p: Any, work_dir: str, name: str) -> None:
    """``--limit``, ``--seed`` (the rows, as bash_matched.py drew them), ``--work-dir`` (where the grouped split is
    written), ``--out`` and ``--name`` (the results files) of a script that re-judges saved samples."""
    p.add_argument("--limit", type=int, default=500, help="seeded random test rows, as the runs drew them")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work-dir", default=work_dir, help="where the grouped split is written")
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    p.add_argument("--name", default=name)


def sampled_rows(lang: Language, split: str, work: Path, limit: int, seed: int) -> tuple[dict[str, Any], list[Any]]:
    """(up to ``limit`` seeded test problems by task id, train records) of ``split``: the rows every script of #18
    judges (bash_matched.py draws them so; its saved samples are keyed by them)."""
    from nl2code.utils.seed import seeded_subset

    _, problems, train = split_data(lang, split, work)
    return {k: problems[k] for k in seeded_subset(list(problems), limit or None, seed)}, train


def grouped_split(lang: Language, out: Path) -> Path:
    """All the benchmark's pairs re-split by a hash of the program string (JSONL rows for ``data.source:
    jsonl``, with each record's extras: CF keeps its tables)."""
    from codefusion_results import grouped_pairs

    grouped_pairs(lang.bench, out, lang.task)
    return out


def split_data(lang: Language, split: str, work: Path) -> tuple[dict[str, Any], dict[str, Any], list[Any]]:
    """(data section for the configs, test problems, train records) of ``split``."""
    from nl2code.data.sources import load_source

    if split == "paper":
        recs = load_source(lang.task, str(lang.bench)).records
        data = {"source": lang.task, "path": str(lang.bench)}
    else:
        path = grouped_split(lang, work / f"{lang.syntax}_grouped.jsonl")
        recs = load_source("jsonl", str(path)).records
        data = {"source": "jsonl", "path": str(path)}
    problems = {r.task_id: r for r in recs if r.split == "test"}
    return data, problems, [r for r in recs if r.split == "train"]


__all__ = [
    "DISTINCT", "KS", "LANGUAGES", "LINKED", "UNSCALED", "VALID", "VALUES", "Language", "chains", "columns",
    "constant_answer", "distinct_results", "grouped_split", "judge", "judge_variants", "linked", "percents",
    "add_row_args", "sampled_rows", "split_data", "steps", "utility_of", "valid_first", "values_linked", "variants",
]  # fmt: skip
