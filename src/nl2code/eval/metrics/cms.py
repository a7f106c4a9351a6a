"""NL2Bash command match score (CMS), the "TM" column of the NL2Bash README and CodeFusion's Bash metric.

Definition (read from the official scorer, TellinaTool/nl2bash: ``eval/token_based.py``
``get_content_tokens``/``CMS``/``command_match_score``, ``eval/eval_tools.py``
``get_automatic_evaluation_metrics``, ``bashlint/data_tools.py`` ``ast2tokens``, ``bashlint/lint.py``
``normalize_ast``; implemented here from that description, no code copied):

* A command becomes a **bag** (multiset) of its non-argument tokens: utility names; flags, each
  carrying the semantic types of its arguments (``-name`` with a pattern is ``-name:Regex``,
  ``-type f`` is ``-type:Constant``, ``find -exec`` is ``-exec:Utility``; the argument values never
  count); and structure (``|``, ``$(`` ... ``)``, ``<(``, ``find``'s ``-and``/``-or``/``!``/parentheses,
  the ``\\;`` or ``+`` ending ``-exec``, ``--``). Arguments (paths, patterns, numbers ...) are left out.
  The same normalisations as the template apply (:mod:`bash_template`: ``/usr/bin/find`` = ``find``,
  ``egrep`` = ``grep -E``, ``xargs cmd`` = ``xargs -I {} cmd {}``, a ``sudo`` prefix is dropped).
* The official parser reads one pipeline of simple commands (with substitutions) and rejects the
  rest; its scorer then falls back to a parser that splits the text into words. So, as there, a
  command with a redirection, an ``&&``/``||``/``;`` list, a loop, ``if``/``case``, ``[ ]``, ``{ }``,
  a function or arithmetic, one that does not parse, or one with nothing else to count (``x=1``) is
  the bag of its whitespace-separated words (arguments included). On CodeFusion's Bash test split
  this fallback moves the constant answer ``find . -name x`` from about 44 to 42.2 (official: 41.6).
* ``CMS(p, g)`` = cosine similarity of the two bags' count vectors, ``Σ_t p_t g_t / (‖p‖ ‖g‖)``;
  0 when either bag is empty.
* With several gold commands for one description, a prediction scores its **best** CMS over them.
* Top-k: a problem's ``cms@k`` is the **max** over its first k predictions (0 with none); the
  dataset score is the mean over problems (the official scorer averages over groups of identical
  normalised descriptions; :class:`~nl2code.eval.tasks.nl2bash.BashTask` averages over test rows).

Our bag still differs from the official one where the parsers disagree otherwise: the official
grammar covers 124 utilities and their documented flags, and a command with any other utility or
flag (``sh -c``, ``find -readable`` ...) falls back to words there, while we analyse it; an
assignment ``x=$(cmd)`` is ``cmd`` there. Measured on CodeFusion's Bash test split
(``benchmarks/bash_baselines.py``), ours is 1.1 (constant answer) to 2.3 (retrieval, top-5) points
above the official scorer on the same predictions.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from functools import lru_cache

from nl2code.eval.metrics.bash_template import analyse

__all__ = ["cms", "cms_best", "cms_topk", "content_bag"]


@lru_cache(maxsize=65536)
def content_bag(cmd: str) -> Counter[str]:
    """The CMS bag of ``cmd``: token -> count (see the module docstring). Do not mutate the result."""
    return Counter(analyse(cmd).content)


def _cosine(a: Counter[str], b: Counter[str]) -> float:
    if not a or not b:
        return 0.0
    dot = sum(n * b[t] for t, n in a.items() if t in b)
    # one square root of the integer product: identical bags score exactly 1.0
    return dot / math.sqrt(sum(n * n for n in a.values()) * sum(n * n for n in b.values()))


def cms(pred: str, gold: str) -> float:
    """Command match score of one prediction against one gold command, in [0, 1]."""
    return _cosine(content_bag(pred), content_bag(gold))


def cms_best(pred: str, golds: Iterable[str]) -> float:
    """Best CMS of ``pred`` over the gold commands of its description (0.0 when there are none)."""
    return max((cms(pred, g) for g in golds), default=0.0)


def cms_topk(scores: Sequence[float], k: int) -> float:
    """A problem's ``cms@k``: the best of the scores of its first ``k`` ranked predictions (0.0 if none)."""
    return max(scores[:k], default=0.0)
