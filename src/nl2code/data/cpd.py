"""Code-specific continuous paragraph denoising (CPD) for CodeFusion pre-training.

codefusion.md §5(b): noise is applied *only to identifiers and built-in keywords*; the encoder sees the
masked program, ``E_s = E(masked y)``, and the diffusion model reconstructs the whole of ``y``. Which
tokens count is decided per language:

- Python: ``tokenize`` NAME tokens (identifiers, ``keyword.kwlist`` keywords, builtins);
- Bash: tree-sitter-bash command names, variable names and reserved words (``for``, ``if`` ...);
- CF rules: the function names of their call grammar (``AND(GreaterThan(5),LessThan(9))``).

The masking rate and span policy are not recovered from the paper (§5): each identifier/keyword
*occurrence* is masked independently with probability ``mask_rate`` (at least one when there is any),
and a masked occurrence becomes one ``<mask>`` token, like GENIE's single ``[MASK]`` per span (§8).
Everything here is a pure function; randomness comes from the ``np.random.Generator`` passed in.
"""

from __future__ import annotations

import bisect
import io
import keyword
import re
import tokenize
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple, Protocol

import numpy as np

LANGUAGES = ("python", "bash", "cf")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Bash words that run their first argument as a command, so "xargs grep" masks "grep" too.
_BASH_WRAPPERS = frozenset({"xargs", "sudo", "nohup", "exec", "time", "nice", "env", "watch", "command"})


class Span(NamedTuple):
    """A half-open character range ``[start, end)`` of one identifier or keyword occurrence."""

    start: int
    end: int
    kind: str  # "identifier" or "keyword"


# -- per-language lexers --------------------------------------------------------------------------
def python_spans(code: str) -> list[Span]:
    """Identifier and keyword occurrences in Python source (fragments welcome).

    CoNaLa snippets are often incomplete; ``tokenize`` streams tokens before failing, so we keep those
    and scan any text after a mid-stream error with a plain identifier regex.
    """
    line_starts = [0]
    for line in code.splitlines(keepends=True):
        line_starts.append(line_starts[-1] + len(line))

    def offset(row: int, col: int) -> int:
        return line_starts[min(row - 1, len(line_starts) - 1)] + col

    spans: list[Span] = []
    done = 0  # char offset up to which tokenize has covered the text
    try:
        for tok in tokenize.generate_tokens(io.StringIO(code).readline):
            start, end = offset(*tok.start), offset(*tok.end)
            done = max(done, end)
            if tok.type == tokenize.NAME:
                kind = "keyword" if keyword.iskeyword(tok.string) or keyword.issoftkeyword(tok.string) else "identifier"
                spans.append(Span(start, end, kind))
    except (tokenize.TokenError, SyntaxError):
        for m in _IDENT.finditer(code, done):
            kind = "keyword" if keyword.iskeyword(m.group()) else "identifier"
            spans.append(Span(m.start(), m.end(), kind))
    return spans


@lru_cache(maxsize=1)
def _bash_parser():
    try:
        import tree_sitter
        import tree_sitter_bash
    except ImportError as e:  # pragma: no cover - both are declared dependencies
        raise RuntimeError("Bash CPD needs the 'tree-sitter' and 'tree-sitter-bash' packages") from e
    return tree_sitter.Parser(tree_sitter.Language(tree_sitter_bash.language()))


def bash_spans(code: str) -> list[Span]:
    """Command names, variable names and reserved words in a Bash command line."""
    data = code.encode("utf-8")
    # tree-sitter reports byte offsets; map them back to character offsets.
    char_at = np.zeros(len(data) + 1, dtype=np.int64)
    pos = 0
    for i, ch in enumerate(code):
        n = len(ch.encode("utf-8"))
        char_at[pos : pos + n] = i
        pos += n
    char_at[len(data)] = len(code)
    tree = _bash_parser().parse(data)
    spans: list[Span] = []

    def add(node, kind: str) -> None:
        spans.append(Span(int(char_at[node.start_byte]), int(char_at[node.end_byte]), kind))

    stack = [tree.root_node]
    while stack:
        node = stack.pop()
        if node.type == "command_name":
            add(node, "keyword")
            name = data[node.start_byte : node.end_byte].decode("utf-8", "replace")
            wrapped = _first_plain_word(node) if name in _BASH_WRAPPERS else None
            if wrapped is not None:
                add(wrapped, "keyword")
            continue
        if node.type == "variable_name":
            add(node, "identifier")
            continue
        if not node.is_named and node.type.isalpha():  # reserved words: for, in, do, if, then, fi ...
            add(node, "keyword")
        stack.extend(node.children)
    return sorted(spans)


def _first_plain_word(command_name_node):
    """The first argument word that is not an option, after a wrapper command such as ``xargs``."""
    node = command_name_node.next_named_sibling
    while node is not None:
        if node.type == "word" and not node.text.startswith(b"-"):
            return node
        node = node.next_named_sibling
    return None


def cf_spans(code: str) -> list[Span]:
    """Function names in a CF rule, by recursive descent over ``call := NAME '(' [arg (',' arg)*] ')'``.

    An argument is a nested call when it starts with ``NAME(``, else a literal that runs to the next
    ``,`` or ``)`` at its nesting depth (literals such as ``In Progress`` contain spaces). Unparseable
    text (a truncated rule) keeps whatever calls were recognised before the failure.
    """
    spans: list[Span] = []

    def call(i: int) -> int:
        m = _IDENT.match(code, i)
        if m is None or m.end() >= len(code) or code[m.end()] != "(":
            raise ValueError(i)
        spans.append(Span(m.start(), m.end(), "keyword"))
        i = m.end() + 1
        while i < len(code) and code[i] != ")":
            i = argument(i)
            if i < len(code) and code[i] == ",":
                i += 1
        return i + 1

    def argument(i: int) -> int:
        while i < len(code) and code[i] == " ":
            i += 1
        m = _IDENT.match(code, i)
        if m is not None and m.end() < len(code) and code[m.end()] == "(":
            return call(i)
        depth = 0
        while i < len(code) and not (depth == 0 and code[i] in ",)"):
            depth += {"(": 1, ")": -1}.get(code[i], 0)
            i += 1
        return i

    i = 0
    try:
        while i < len(code):
            if code[i].isspace() or code[i] == ",":
                i += 1
                continue
            i = call(i)
    except (ValueError, IndexError):
        pass
    return spans


def keyword_spans(code: str, language: str) -> list[Span]:
    """Identifier/keyword occurrences of ``code`` for ``language`` in ``LANGUAGES``."""
    if language == "python":
        return python_spans(code)
    if language == "bash":
        return bash_spans(code)
    if language == "cf":
        return cf_spans(code)
    raise ValueError(f"CPD: unknown language {language!r} (known: {', '.join(LANGUAGES)})")


# -- token level ----------------------------------------------------------------------------------
class Decoder(Protocol):
    def decode_batch(self, batch: list[list[int]], skip_special: bool = False) -> list[str]: ...


def token_char_ends(tokenizer: Decoder, ids: list[int]) -> tuple[str, list[int]]:
    """Decode ``ids`` and give the character offset where each token ends.

    Decoding every prefix (one batched call) works for any tokenizer with a faithful ``decode``. A
    byte-level token that ends inside a multi-byte character does not decode to a prefix of the text;
    it gets the end of the next token that does.
    """
    texts = tokenizer.decode_batch([ids[: i + 1] for i in range(len(ids))])
    full = texts[-1] if texts else ""
    ends = [len(p) if full.startswith(p) else -1 for p in texts]
    nxt = len(full)
    for i in range(len(ends) - 1, -1, -1):
        if ends[i] < 0:
            ends[i] = nxt
        nxt = ends[i]
    return full, ends


def keyword_token_groups(tokenizer: Decoder, ids: list[int], language: str) -> list[tuple[int, int]]:
    """Token index ranges ``[i, j)``, one per identifier/keyword occurrence (merged where they touch)."""
    text, ends = token_char_ends(tokenizer, ids)
    starts = [0] + ends[:-1]
    groups: list[tuple[int, int]] = []
    for span in keyword_spans(text, language):
        i = bisect.bisect_right(ends, span.start)  # first token ending after the span starts
        j = bisect.bisect_left(starts, span.end)  # first token starting at or after the span end
        if i >= j:
            continue
        if groups and i < groups[-1][1]:
            groups[-1] = (groups[-1][0], max(j, groups[-1][1]))
        else:
            groups.append((i, j))
    return groups


@dataclass
class CPDExample:
    """One CPD training pair.

    Attributes:
        input_ids: the masked program, for the encoder.
        target_ids: the original program, the diffusion target.
        masked: per target token, whether it was hidden from the encoder.
    """

    input_ids: list[int]
    target_ids: list[int]
    masked: list[bool]


def cpd_mask(
    ids: list[int],
    groups: list[tuple[int, int]],
    mask_id: int,
    rng: np.random.Generator,
    mask_rate: float = 0.5,
    collapse: bool = True,
) -> CPDExample:
    """Mask a random subset of the token ``groups`` of ``ids`` (see module doc for the policy).

    Args:
        ids: program token ids.
        groups: sorted, disjoint token ranges eligible for masking (:func:`keyword_token_groups`).
        mask_id: the ``<mask>`` token id.
        rng: randomness.
        mask_rate: probability of masking each group; at least one group is masked if any exists.
        collapse: one ``<mask>`` per masked group (GENIE) instead of one per masked token.
    """
    if not 0.0 <= mask_rate <= 1.0:
        raise ValueError(f"mask_rate must be in [0, 1], got {mask_rate}")
    chosen = rng.random(len(groups)) < mask_rate
    if groups and not chosen.any() and mask_rate > 0:
        chosen[rng.integers(len(groups))] = True
    masked = [False] * len(ids)
    out: list[int] = []
    prev = 0
    for (i, j), pick in zip(groups, chosen):
        if not pick:
            continue
        out.extend(ids[prev:i])
        out.extend([mask_id] if collapse else [mask_id] * (j - i))
        masked[i:j] = [True] * (j - i)
        prev = j
    out.extend(ids[prev:])
    return CPDExample(input_ids=out, target_ids=list(ids), masked=masked)


def cpd_example(
    tokenizer: Decoder,
    ids: list[int],
    language: str,
    mask_id: int,
    rng: np.random.Generator,
    mask_rate: float = 0.5,
    collapse: bool = True,
) -> CPDExample:
    """:func:`keyword_token_groups` then :func:`cpd_mask`: a CPD pair from tokenized code."""
    groups = keyword_token_groups(tokenizer, ids, language)
    return cpd_mask(ids, groups, mask_id, rng, mask_rate=mask_rate, collapse=collapse)


def group_ids(groups: list[tuple[int, int]], length: int) -> list[int]:
    """Per-token group number (1-based; 0 = not maskable): the form a batch carries to the objective."""
    out = [0] * length
    for g, (i, j) in enumerate(groups, start=1):
        out[i:j] = [g] * (j - i)
    return out


def groups_from_ids(ids: list[int]) -> list[tuple[int, int]]:
    """Inverse of :func:`group_ids`: the token ranges of each nonzero group number, in order."""
    groups: list[tuple[int, int]] = []
    for k, g in enumerate(ids):
        if g == 0:
            continue
        if groups and ids[k - 1] == g and groups[-1][1] == k:
            groups[-1] = (groups[-1][0], k + 1)
        else:
            groups.append((k, k + 1))
    return groups


def cpd_group_ids(
    tokenizer: Decoder, ids: list[int], language: str, special_ids: frozenset[int] = frozenset()
) -> list[int]:
    """Per-token occurrence numbers for ``Batch.extras["cpd_groups"]`` (0 = not maskable).

    Tokens in ``special_ids`` (e.g. a trailing ``<eos>``; pass ``CodeTokenizer.special_ids``) are
    left out of the lexing, so their literal text never reaches the Python/Bash/CF lexers.
    """
    keep = [k for k, t in enumerate(ids) if t not in special_ids]
    sub = group_ids(keyword_token_groups(tokenizer, [ids[k] for k in keep], language), len(keep))
    out = [0] * len(ids)
    for k, g in zip(keep, sub):
        out[k] = g
    return out
