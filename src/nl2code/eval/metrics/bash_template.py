"""NL2Bash template match and full-command match (clean-room, on tree-sitter-bash).

The metric follows the published description (Lin et al. 2018; CodeFusion's Bash metric): a command's
*template* keeps its structure (utilities, flags, pipes, ``&&``/``||``/``;``, redirections, subshells,
command and process substitution, ``find`` operators and ``-exec ... \\;``) and replaces every
open-vocabulary argument by a semantic type (``File``, ``Regex``, ``Number``, ``Size``, ``Timespan``,
``Permission`` ...; the types and per-utility tables are in :mod:`bash_tables`). A prediction matches
when its template equals the gold one.

Typing and normalisation rules:
* words are unquoted and unescaped first (``"*.txt"``, ``\\*.txt`` and ``'*.txt'`` are the same);
* bundled short flags are split (``-la`` = ``-l -a``) except for utilities with single-dash long
  options (``find`` ...); ``--opt=value`` keeps ``--opt`` and types the value; old-style
  ``tar czvf`` reads as ``tar -czvf``;
* an option listed as taking an argument consumes the next word (or the rest of the bundle:
  ``-n5``), typed by the table; ``-5`` is ``-Number`` for count-taking utilities (``head -5``)
  and kept verbatim otherwise (``ls -1``, ``kill -9``); other words are positionals typed per
  utility (``grep PATTERN FILE`` -> ``Regex File``), else generically: ``$X`` -> Variable,
  digits -> Number, ``10M`` -> Size, ``+%Y`` -> Format, quoted text with spaces -> String,
  anything else -> File;
* flags of one command (with their typed arguments) are sorted, since their order carries no
  meaning; ``find``'s expression keeps its order; positionals keep their order after the flags;
* wrappers (``xargs``, ``sudo``, ``nohup``, ``time``, ``env``, ``watch``, ``timeout`` ...) type
  their own flags, then the rest is templated as a command; ``find -exec`` likewise;
* ``{}``, ``-`` and ``/dev/null``-like paths, redirection targets ``&1``/digits, signs of find
  quantities (``-mtime +7`` -> ``-mtime +Timespan``) and closed vocabularies (``-type f``) are kept.

A command *parses* when tree-sitter-bash's tree has no ERROR or MISSING node. A prediction that does
not parse is wrong; a gold command that does not parse gets the fallback template
``("<unparsed>", <whitespace-normalised text>)`` so it stays comparable with itself.
The same analysis yields the utilities and flags the NLC2CMD score uses (:mod:`nlc2cmd`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from nl2code.eval.metrics.bash_tables import (
    COUNT_FLAGS,
    FIND_ARG_PRIMARIES,
    FIND_EXEC,
    FIND_OPERATORS,
    OPTION_ARGS,
    PATTERN_OPTIONS,
    POSITIONAL,
    SINGLE_DASH_LONG,
    SUBCOMMANDS,
    VERBATIM_ARGS,
    WRAPPERS,
)

__all__ = [
    "BashAnalysis", "Utility", "analyse", "command_match", "gold_template", "normalise_whitespace", "parses",
    "template_match",
]  # fmt: skip

UNPARSED = "<unparsed>"
_SUBS = ("command_substitution", "process_substitution")
_REDIRECTS = ("file_redirect", "heredoc_redirect", "herestring_redirect")
_WORDLIKE = frozenset(
    ["word", "number", "string", "raw_string", "ansi_c_string", "translated_string", "concatenation",
     "simple_expansion", "expansion", "arithmetic_expansion", "brace_expression"]
)  # fmt: skip
_CONTAINERS = frozenset(
    ["program", "subshell", "compound_statement", "do_group", "command_substitution", "process_substitution"]
)
_NUMBER = re.compile(r"[+-]?\d+(\.\d+)?")
_SIZE = re.compile(r"[+-]?\d+(\.\d+)?[kKmMgGtTpPcbwB][bB]?")


@lru_cache(maxsize=1)
def _parser() -> Any:
    import tree_sitter_bash
    from tree_sitter import Language, Parser

    return Parser(Language(tree_sitter_bash.language()))


def _parse(cmd: str) -> Any:
    return _parser().parse(cmd.encode("utf-8")).root_node


def parses(cmd: str) -> bool:
    """True when tree-sitter-bash parses ``cmd`` without ERROR/MISSING nodes (and it is not empty)."""
    root = _parse(cmd)
    return bool(cmd.strip()) and not root.has_error


def normalise_whitespace(cmd: str) -> str:
    return " ".join(cmd.split())


@dataclass(frozen=True)
class Utility:
    """One utility occurrence (NLC2CMD): its name and the set of its flag names."""

    name: str
    flags: frozenset[str]


@dataclass(frozen=True)
class BashAnalysis:
    parsed: bool
    template: tuple[str, ...]
    utilities: tuple[Utility, ...]


@dataclass
class _Word:
    node: Any
    text: str  # unquoted, unescaped
    quoted: bool
    variable: bool  # the word is exactly one $X / ${X}
    subs: list[Any]  # top-level command/process substitutions inside the word
    whole_sub: bool  # the word is exactly one substitution


@dataclass
class _Entry:
    name: str
    flags: set[str] = field(default_factory=set)


def _text(node: Any) -> str:
    return node.text.decode("utf-8", errors="replace")


def _unquote(node: Any) -> tuple[str, bool]:
    t, raw = node.type, _text(node)
    if t == "string":
        return raw[1:-1], True
    if t == "raw_string":
        return raw[1:-1], True
    if t in ("ansi_c_string", "translated_string"):
        return raw[2:-1], True
    if t == "concatenation":
        parts = [_unquote(c) if c.is_named else (_text(c), False) for c in node.children]
        return "".join(p for p, _ in parts), any(q for _, q in parts)
    if t == "word":
        return re.sub(r"\\(.)", r"\1", raw), False
    return raw, False


def _top_subs(node: Any) -> list[Any]:
    if node.type in _SUBS:
        return [node]
    return [s for c in node.children for s in _top_subs(c)]


def _word(node: Any) -> _Word:
    text, quoted = _unquote(node)
    inner = node.named_children if node.type == "string" else [node]
    only = inner[0] if len(inner) == 1 else None
    variable = only is not None and only.type in ("simple_expansion", "expansion")
    whole = only is not None and only.type in _SUBS
    return _Word(node, text, quoted, variable, _top_subs(node), whole)


def _is_flag(w: _Word) -> bool:
    return w.text.startswith("-") and len(w.text) > 1 and not w.subs and not w.variable


class _Emitter:
    def __init__(self) -> None:
        self.tokens: list[str] = []
        self.entries: list[_Entry] = []

    def collect(self, fn: Any, *args: Any) -> list[str]:
        saved, self.tokens = self.tokens, []
        fn(*args)
        out, self.tokens = self.tokens, saved
        return out

    # ---- structure ---------------------------------------------------------------------------
    def emit(self, node: Any) -> None:
        t = node.type
        if t == "comment":
            return
        if t == "command":
            return self.command(node)
        if t == "redirected_statement":
            for c in node.named_children:
                if c.type not in _REDIRECTS:
                    self.emit(c)
            for c in node.named_children:
                if c.type in _REDIRECTS:
                    self.redirect(c)
            return
        if t in _REDIRECTS:
            return self.redirect(node)
        if t == "variable_assignment":
            return self.assignment(node)
        if t in _WORDLIKE:
            return self.loose_word(_word(node))
        if not node.children:
            if node.is_named:
                self.tokens.append(self.leaf(node))
            else:
                self.tokens.append(_text(node))
            return
        if t in ("command_substitution", "process_substitution"):
            opener = _text(node.children[0])
            self.tokens.append("$(" if opener in ("`", "$(") else opener)
            self.sequence([c for c in node.children if c.is_named])
            self.tokens.append(")")
            return
        if t in _CONTAINERS:
            return self.sequence_with_ops(node)
        for c in node.children:
            if c.is_named:
                self.emit(c)
            else:
                self.tokens.append(_text(c))

    def sequence(self, nodes: list[Any]) -> None:
        for i, n in enumerate(n for n in nodes if n.type != "comment"):
            if i:
                self.tokens.append(";")
            self.emit(n)

    def sequence_with_ops(self, node: Any) -> None:
        """Children of a statement container; a newline between statements reads as ``;``."""
        prev_named = False
        for c in node.children:
            if c.type == "comment":
                continue
            if c.is_named:
                if prev_named:
                    self.tokens.append(";")
                self.emit(c)
                prev_named = True
            else:
                self.tokens.append(_text(c))
                prev_named = False

    def leaf(self, node: Any) -> str:
        if node.type == "variable_name":
            return "Variable"
        if node.type == "regex":
            return "Regex"
        return _text(node)  # test operators, file descriptors, special variables ...

    def redirect(self, node: Any) -> None:
        op = "".join(_text(c) for c in node.children if c.type == "file_descriptor" or not c.is_named)
        if node.type == "heredoc_redirect":
            self.tokens += ["<<", "Heredoc"]
            return
        self.tokens.append(op.strip())
        targets = [c for c in node.named_children if c.type != "file_descriptor"]
        for target in targets[:1]:
            w = _word(target)
            if w.whole_sub:
                self.emit(w.subs[0])
            elif re.fullmatch(r"&?\d+|&?-", w.text) or w.text in VERBATIM_ARGS:
                self.tokens.append(w.text)
            else:
                self.typed(w, "String" if node.type == "herestring_redirect" else "File")

    def assignment(self, node: Any) -> None:
        self.tokens += ["Variable", "="]
        values = [c for c in node.named_children if c.type != "variable_name" and c.type != "subscript"]
        for v in values[:1]:
            self.positional(_word(v), None)

    # ---- words -------------------------------------------------------------------------------
    def typed(self, w: _Word, type_name: str) -> None:
        """``type_name`` for the word, followed by the structure of any substitution inside it."""
        if w.whole_sub:
            return self.emit(w.subs[0])
        self.tokens.append(type_name)
        for s in w.subs:
            self.emit(s)

    def positional(self, w: _Word, type_name: str | None) -> None:
        if w.text in VERBATIM_ARGS and not w.subs:
            self.tokens.append(w.text)
        elif type_name is not None:
            self.typed(w, type_name)
        else:
            self.typed(w, _generic_type(w))

    def loose_word(self, w: _Word) -> None:
        """A word outside a command (for-lists, test expressions): flags verbatim, else typed."""
        if _is_flag(w):
            self.tokens.append(w.text)
        else:
            self.positional(w, None)

    def option_arg(self, type_name: str, w: _Word, text: str | None = None) -> None:
        text = w.text if text is None else text
        if type_name == "=":
            self.tokens.append(text)
            return
        sign = ""
        if type_name.startswith("±"):
            type_name = type_name[1:]
            sign = text[:1] if text[:1] in "+-/" and len(text) > 1 else ""
        if text in VERBATIM_ARGS:
            self.tokens.append(text)
        else:
            self.typed(w, sign + type_name)

    # ---- commands ----------------------------------------------------------------------------
    def command(self, node: Any) -> None:
        name_node, words, redirects = None, [], []
        for c in node.named_children:
            if c.type == "variable_assignment" and name_node is None:
                self.assignment(c)
            elif c.type == "command_name":
                name_node = c
            elif c.type in _REDIRECTS:
                redirects.append(c)
            elif c.type != "comment":
                words.append(_word(c))
        if name_node is not None:
            inner = name_node.named_children
            self.run_utility(_word(inner[0] if inner else name_node), words)
        for r in redirects:
            self.redirect(r)

    def run_utility(self, name_word: _Word, words: list[_Word]) -> None:
        if name_word.subs:
            self.typed(name_word, "Utility")
            self.entries.append(_Entry("Utility"))
            return self.generic("", words, self.entries[-1])
        name = name_word.text
        token = "Variable" if name_word.variable else ("Executable" if "/" in name else name)
        self.tokens.append(token)
        entry = _Entry(token)
        self.entries.append(entry)
        if name == "find":
            self.find(words, entry)
        elif name in WRAPPERS:
            self.wrapper(name, words, entry)
        else:
            self.generic(name, words, entry)

    def flags(self, name: str, words: list[_Word], entry: _Entry, stop_at_positional: bool):
        """Parse options: (sorted flag units, positional words, index after the last word used)."""
        opts = OPTION_ARGS.get(name, {}) | OPTION_ARGS["*"]
        units: list[list[str]] = []
        positionals: list[_Word] = []
        i, end_of_options = 0, False
        while i < len(words):
            w = words[i]
            i += 1
            if end_of_options or not _is_flag(w):
                if stop_at_positional:
                    return sorted(units), positionals, i - 1
                positionals.append(w)
                continue
            text = w.text
            if text == "--":
                end_of_options = True
                units.append(["--"])
            elif text.startswith("--"):
                flag, eq, value = text.partition("=")
                entry.flags.add(flag)
                if eq:
                    units.append([flag, "=", *self.collect(self.option_arg, opts.get(flag) or "Value", w, value)])
                elif opts.get(flag) and i < len(words):
                    units.append([flag, *self.collect(self.option_arg, opts[flag], words[i])])
                    i += 1
                else:
                    units.append([flag])
            elif _NUMBER.fullmatch(text) and name in COUNT_FLAGS:
                entry.flags.add("-Number")  # head -5, grep -3: a count given as a flag
                units.append(["-Number"])
            elif _NUMBER.fullmatch(text):
                entry.flags.add(text)  # ls -1, xargs -0, kill -9: the digit names the option
                units.append([text])
            elif name in SINGLE_DASH_LONG or text in opts:
                entry.flags.add(text)
                if opts.get(text) and i < len(words):
                    units.append([text, *self.collect(self.option_arg, opts[text], words[i])])
                    i += 1
                else:
                    units.append([text])
            else:
                letters = text[1:]
                for j, ch in enumerate(letters):
                    flag = "-" + ch
                    entry.flags.add(flag)
                    if not opts.get(flag):
                        units.append([flag])
                        continue
                    rest = letters[j + 1 :]
                    if rest:
                        units.append([flag, *self.collect(self.option_arg, opts[flag], w, rest)])
                    elif i < len(words):
                        units.append([flag, *self.collect(self.option_arg, opts[flag], words[i])])
                        i += 1
                    else:
                        units.append([flag])
                    break
        return sorted(units), positionals, len(words)

    def generic(self, name: str, words: list[_Word], entry: _Entry) -> None:
        if name == "tar" and words and re.fullmatch(r"[A-Za-z]+", words[0].text) and not words[0].subs:
            # old-style bundle without a dash: "tar czvf out.tgz dir" = "tar -czvf out.tgz dir"
            first = words[0]
            words = [_Word(first.node, "-" + first.text, False, False, [], False), *words[1:]]
        units, positionals, _ = self.flags(name, words, entry, stop_at_positional=False)
        for u in units:
            self.tokens += u
        types = POSITIONAL.get(name)
        if types and name in PATTERN_OPTIONS and entry.flags & PATTERN_OPTIONS[name]:
            types = types[1:] or None
        if name in SUBCOMMANDS and positionals and not positionals[0].subs:
            self.tokens.append(positionals[0].text)
            positionals = positionals[1:]
        for k, w in enumerate(positionals):
            self.positional(w, types[min(k, len(types) - 1)] if types else None)

    def wrapper(self, name: str, words: list[_Word], entry: _Entry) -> None:
        start = 0
        if name == "env":
            while start < len(words) and "=" in words[start].text and not _is_flag(words[start]):
                self.tokens += ["Variable", "=", "Value"]
                start += 1
        units, _, used = self.flags(name, words[start:], entry, stop_at_positional=True)
        for u in units:
            self.tokens += u
        rest = words[start + used :]
        if name == "timeout" and rest:
            self.positional(rest[0], "Timespan")
            rest = rest[1:]
        if rest:
            self.run_utility(rest[0], rest[1:])

    def find(self, words: list[_Word], entry: _Entry) -> None:
        i = 0
        while i < len(words) and words[i].text in ("-H", "-L", "-P"):
            self.tokens.append(words[i].text)
            entry.flags.add(words[i].text)
            i += 1
        while i < len(words) and not _find_expression_start(words[i]):
            self.positional(words[i], "Path")
            i += 1
        while i < len(words):
            w, text = words[i], words[i].text
            i += 1
            if text in FIND_OPERATORS and not w.subs:
                self.tokens.append(FIND_OPERATORS[text])
            elif text in FIND_EXEC:
                self.tokens.append(text)
                entry.flags.add(text)
                j = i
                while j < len(words) and not _exec_end(words, j):
                    j += 1
                if j > i:
                    self.run_utility(words[i], words[i + 1 : j])
                if j < len(words):
                    self.tokens.append("\\;" if words[j].text == ";" else "+")
                i = j + 1
            elif text in FIND_ARG_PRIMARIES or re.fullmatch(r"-newer[acmBt][acmBt]", text):
                self.tokens.append(text)
                entry.flags.add(text)
                kind = FIND_ARG_PRIMARIES.get(text) or ("DateTime" if text.endswith("t") else "File")
                if i < len(words):
                    self.option_arg(kind, words[i])
                    i += 1
            elif _is_flag(w) and not _NUMBER.fullmatch(text):
                self.tokens.append(text)
                entry.flags.add(text)
            else:
                self.positional(w, None)


def _find_expression_start(w: _Word) -> bool:
    return (_is_flag(w) and not _NUMBER.fullmatch(w.text)) or w.text in ("(", "!", ")")


def _exec_end(words: list[_Word], j: int) -> bool:
    text = words[j].text
    return text == ";" or (text == "+" and j > 0 and words[j - 1].text == "{}")


def _generic_type(w: _Word) -> str:
    if w.variable:
        return "Variable"
    text = w.text
    if _NUMBER.fullmatch(text):
        return "Number"
    if _SIZE.fullmatch(text):
        return "Size"
    if text.startswith("+") and "%" in text:
        return "Format"
    if w.quoted and any(ch.isspace() for ch in text):
        return "String"
    return "File"


@lru_cache(maxsize=65536)
def analyse(cmd: str) -> BashAnalysis:
    """Template and utilities of ``cmd`` (``parsed`` False: fallback template, no utilities)."""
    if not parses(cmd):
        return BashAnalysis(False, (UNPARSED, normalise_whitespace(cmd)), ())
    emitter = _Emitter()
    emitter.emit(_parse(cmd))
    utilities = tuple(Utility(e.name, frozenset(e.flags)) for e in emitter.entries)
    return BashAnalysis(True, tuple(emitter.tokens), utilities)


def gold_template(cmd: str) -> str:
    """The template string of a reference command (the fallback one when it does not parse)."""
    return " ".join(analyse(cmd).template)


def template_match(pred: str, gold: str) -> bool:
    """Prediction and gold have the same template; a prediction that does not parse only matches
    an unparseable gold with the same whitespace-normalised text (so every gold matches itself)."""
    p, g = analyse(pred), analyse(gold)
    if not p.parsed:
        return not g.parsed and p.template == g.template
    return p.template == g.template


def command_match(pred: str, gold: str) -> bool:
    """Full-command match: identical after whitespace normalisation."""
    return normalise_whitespace(pred) == normalise_whitespace(gold) and bool(pred.strip())
