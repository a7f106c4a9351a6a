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
  digits -> Number, ``10M`` -> Size, ``+%Y`` -> Format, anything else -> File (quoting does not
  change a type: ``mkdir "my dir"`` = ``mkdir mydir``);
* flags of one command (with their typed arguments) are sorted, since their order carries no
  meaning; ``find``'s expression keeps its order; positionals keep their order after the flags;
* wrappers (``xargs``, ``nohup``, ``time``, ``env``, ``watch``, ``timeout`` ...) type
  their own flags, then the rest is templated as a command; ``find -exec`` likewise;
* ``{}``, ``-`` and ``/dev/null``-like paths, redirection targets ``&1``/digits, signs of find
  quantities (``-mtime +7`` -> ``-mtime +Timespan``) and closed vocabularies (``-type f``) are kept;
* a trailing ``;`` is dropped.

Normalisations of the official NL2Bash scorer (TellinaTool/nl2bash ``bashlint/lint.py``
``correct_errors_and_normalize_surface`` and ``normalize_ast``, read for their definitions; where
ours differed, ours was stricter), adopted here:
* ``find`` without a start point reads as ``find .`` (template ``find Path ...``);
* a utility called by its path in a standard bin folder is the utility (``/usr/bin/find`` = ``find``);
* ``egrep`` = ``grep -E``, ``fgrep`` = ``grep -F`` (the flag is not repeated when given);
* ``xargs cmd args`` = ``xargs -I {} cmd args {}``, and ``xargs -I X cmd X`` = ``xargs -I {} cmd {}``
  (GNU ``-i``/``--replace`` are ``-I {}``);
* a ``sudo`` prefix (with its own options) is dropped: ``sudo rm x`` = ``rm x``;
* typographic dashes and quotes read as ASCII, a leading ``$ ``/``# `` prompt is dropped.
Not adopted: the official parser rejects redirections, ``&&``/``||``/``;`` lists, loops and
utilities beyond its grammar and then compares raw words (its template of such a command is the
command itself); we keep analysing them (the command match score, :mod:`cms`, does follow it).

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
    # the command-match-score bag (:mod:`cms`): utilities, flags with their argument types, structure;
    # the command's words when it does not parse or is more than one pipeline (see _beyond_one_pipeline)
    content: tuple[str, ...] = ()


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
        self.content: list[str] = []  # CMS bag: utilities, flags with argument types, structure
        self.replace_str: str | None = None  # xargs -I string being normalised to {} in its command

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
                self.structure(_text(node))
            return
        if t in ("command_substitution", "process_substitution"):
            opener = _text(node.children[0])
            self.structure("$(" if opener in ("`", "$(") else opener)
            self.sequence([c for c in node.children if c.is_named])
            self.structure(")")
            return
        if t in _CONTAINERS:
            return self.sequence_with_ops(node)
        for c in node.children:
            if c.is_named:
                self.emit(c)
            else:
                self.structure(_text(c))

    def structure(self, token: str) -> None:
        """A structural token (operator, keyword, substitution bracket): in the template and the bag."""
        self.tokens.append(token)
        self.content.append(token)

    def sequence(self, nodes: list[Any]) -> None:
        for i, n in enumerate(n for n in nodes if n.type != "comment"):
            if i:
                self.structure(";")
            self.emit(n)

    def sequence_with_ops(self, node: Any) -> None:
        """Children of a statement container; a newline between statements reads as ``;``."""
        prev_named = False
        children = [c for c in node.children if c.type != "comment"]
        for k, c in enumerate(children):
            if c.type == ";" and not any(n.is_named for n in children[k + 1 :]):
                continue  # a trailing ";" ends the last statement and means nothing
            if c.is_named:
                if prev_named:
                    self.structure(";")
                self.emit(c)
                prev_named = True
            else:
                self.structure(_text(c))
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
        if self.replace_str is not None and w.text == self.replace_str and not w.subs:
            self.tokens.append("{}")  # xargs -I X ... X reads as xargs -I {} ... {}
        elif w.text in VERBATIM_ARGS and not w.subs:
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
        name = name_word.text if name_word.variable else _canonical_utility(name_word.text)
        if name == "sudo" and not name_word.variable and self.sudo(words):
            return
        implied = ()
        if name in IMPLIED_FLAGS and not name_word.variable:
            name, implied = IMPLIED_FLAGS[name]
        token = "Variable" if name_word.variable else ("Executable" if "/" in name else name)
        self.tokens.append(token)
        self.content.append(token)
        entry = _Entry(token)
        self.entries.append(entry)
        if name == "find":
            self.find(words, entry)
        elif name in WRAPPERS:
            self.wrapper(name, words, entry)
        else:
            self.generic(name, words, entry, implied)

    def sudo(self, words: list[_Word]) -> bool:
        """``sudo [options] cmd ...`` reads as ``cmd ...`` (the official scorer drops every ``sudo``);
        False (nothing emitted) when no command follows, and ``sudo`` is then an ordinary utility."""
        saved = len(self.content)
        _, _, used = self.flags("sudo", words, _Entry("sudo"), stop_at_positional=True)
        del self.content[saved:]
        if used >= len(words):
            return False
        self.run_utility(words[used], words[used + 1 :])
        return True

    def add_units(self, units: list[tuple[list[str], str]]) -> None:
        for tokens, bag in units:
            self.tokens += tokens
            self.content.append(bag)

    def flags(self, name: str, words: list[_Word], entry: _Entry, stop_at_positional: bool):
        """Parse options: (sorted flag units, positional words, index after the last word used).

        A unit is (its template tokens, its bag token: the flag, with ``:Type`` when it has an argument).
        """
        opts = OPTION_ARGS.get(name, {}) | OPTION_ARGS["*"]
        units: list[tuple[list[str], str]] = []
        positionals: list[_Word] = []
        i, end_of_options = 0, False

        def plain(flag: str) -> None:
            units.append(([flag], flag))

        def with_arg(flag: str, type_name: str, w: _Word, text: str | None = None, eq: str = "") -> None:
            tokens = [flag, *([eq] if eq else []), *self.collect(self.option_arg, type_name, w, text)]
            units.append((tokens, _flag_bag(flag, type_name)))

        while i < len(words):
            w = words[i]
            i += 1
            if end_of_options or not _is_flag(w):
                if stop_at_positional:
                    return _sorted_units(units), positionals, i - 1
                positionals.append(w)
                continue
            text = w.text
            if text == "--":
                end_of_options = True
                plain("--")
            elif name == "xargs" and text in ("-i", "--replace"):
                entry.flags.add(text)  # GNU's -I {}; a replace string other than {} comes attached
                plain(text)
            elif text.startswith("--"):
                flag, eq, value = text.partition("=")
                entry.flags.add(flag)
                if eq:
                    with_arg(flag, opts.get(flag) or "Value", w, value, eq="=")
                elif opts.get(flag) and i < len(words):
                    with_arg(flag, opts[flag], words[i])
                    i += 1
                else:
                    plain(flag)
            elif _NUMBER.fullmatch(text) and name in COUNT_FLAGS:
                entry.flags.add("-Number")  # head -5, grep -3: a count given as a flag
                plain("-Number")
            elif _NUMBER.fullmatch(text):
                entry.flags.add(text)  # ls -1, xargs -0, kill -9: the digit names the option
                plain(text)
            elif name in SINGLE_DASH_LONG or text in opts:
                entry.flags.add(text)
                if opts.get(text) and i < len(words):
                    with_arg(text, opts[text], words[i])
                    i += 1
                else:
                    plain(text)
            else:
                letters = text[1:]
                for j, ch in enumerate(letters):
                    flag = "-" + ch
                    entry.flags.add(flag)
                    if not opts.get(flag):
                        plain(flag)
                        continue
                    rest = letters[j + 1 :]
                    if rest:
                        with_arg(flag, opts[flag], w, rest)
                    elif i < len(words):
                        with_arg(flag, opts[flag], words[i])
                        i += 1
                    else:
                        plain(flag)
                    break
        return _sorted_units(units), positionals, len(words)

    def generic(self, name: str, words: list[_Word], entry: _Entry, implied: tuple[str, ...] = ()) -> None:
        if name == "tar" and words and re.fullmatch(r"[A-Za-z]+", words[0].text) and not words[0].subs:
            # old-style bundle without a dash: "tar czvf out.tgz dir" = "tar -czvf out.tgz dir"
            first = words[0]
            words = [_Word(first.node, "-" + first.text, False, False, [], False), *words[1:]]
        units, positionals, _ = self.flags(name, words, entry, stop_at_positional=False)
        if implied and not entry.flags & set(implied):
            entry.flags.add(implied[0])  # egrep = grep -E, fgrep = grep -F
            units = _sorted_units([*units, ([implied[0]], implied[0])])
        self.add_units(units)
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
        rest = words[start + used :]
        replace_str = None
        if name == "xargs" and rest:
            units, replace_str, rest = _xargs_replace(units, rest, entry)
        self.add_units(units)
        if name == "timeout" and rest:
            self.positional(rest[0], "Timespan")
            rest = rest[1:]
        if rest:
            saved, self.replace_str = self.replace_str, replace_str
            self.run_utility(rest[0], rest[1:])
            self.replace_str = saved

    def find(self, words: list[_Word], entry: _Entry) -> None:
        i = 0
        while i < len(words) and words[i].text in ("-H", "-L", "-P"):
            self.tokens.append(words[i].text)
            self.content.append(words[i].text)
            entry.flags.add(words[i].text)
            i += 1
        start = i
        while i < len(words) and not _find_expression_start(words[i]):
            self.positional(words[i], "Path")
            i += 1
        if i == start and words:
            self.tokens.append("Path")  # no start point: find searches ".", as if it were given
        while i < len(words):
            w, text = words[i], words[i].text
            i += 1
            if text in FIND_OPERATORS and not w.subs:
                self.structure(FIND_OPERATORS[text])
            elif text in FIND_EXEC:
                self.tokens.append(text)
                self.content.append(_flag_bag(text, "Utility"))
                entry.flags.add(text)
                j = i
                while j < len(words) and not _exec_end(words, j):
                    j += 1
                if j > i:
                    self.run_utility(words[i], words[i + 1 : j])
                end = "+" if j < len(words) and words[j].text == "+" else "\\;"
                if j < len(words):
                    self.tokens.append(end)
                self.content.append(end)  # a missing terminator reads as \;
                i = j + 1
            elif text in FIND_ARG_PRIMARIES or re.fullmatch(r"-newer[acmBt][acmBt]", text):
                self.tokens.append(text)
                entry.flags.add(text)
                kind = FIND_ARG_PRIMARIES.get(text) or ("DateTime" if text.endswith("t") else "File")
                self.content.append(_flag_bag(text, kind) if i < len(words) else text)
                if i < len(words):
                    self.option_arg(kind, words[i])
                    i += 1
            elif _is_flag(w) and not _NUMBER.fullmatch(text):
                self.tokens.append(text)
                self.content.append(text)
                entry.flags.add(text)
            else:
                self.positional(w, None)


# egrep = grep -E, fgrep = grep -F (the official scorer's normalisation): name -> (utility, flag and
# its long spelling; the flag is added unless one of them is given)
IMPLIED_FLAGS = {"egrep": ("grep", ("-E", "--extended-regexp")), "fgrep": ("grep", ("-F", "--fixed-strings"))}
_BIN_PATH = re.compile(r"/(?:usr/(?:local/)?)?s?bin/([A-Za-z0-9_.+-]+)")
_XARGS_REPLACE = ("-I", "-i", "--replace")


def _canonical_utility(name: str) -> str:
    """``/usr/bin/find``, ``/bin/rm`` ... -> ``find``, ``rm``: a utility called by its path in a standard
    bin folder (``/bin``, ``/sbin``, ``/usr/bin``, ``/usr/sbin``, ``/usr/local/bin``, ``/usr/local/sbin``)."""
    m = _BIN_PATH.fullmatch(name)
    return m.group(1) if m else name


def _flag_bag(flag: str, type_name: str) -> str:
    """Bag token of an option with an argument: the option and the argument's type, never its value."""
    return f"{flag}:{'Constant' if type_name == '=' else type_name.lstrip('±')}"


def _sorted_units(units: list[tuple[list[str], str]]) -> list[tuple[list[str], str]]:
    return sorted(units, key=lambda u: u[0])


def _xargs_replace(units: list[tuple[list[str], str]], rest: list[_Word], entry: _Entry):
    """``xargs cmd args`` reads as ``xargs -I {} cmd args {}`` and ``xargs -I X cmd X`` as
    ``xargs -I {} cmd {}`` (the official scorer's normalisation; ``-i`` and ``--replace`` are GNU's
    spellings of ``-I {}``). Returns the units, the replace string to rewrite and the command words."""
    replace_str, kept = None, []
    for tokens, bag in units:
        if tokens[0] in _XARGS_REPLACE:
            value = tokens[-1] if len(tokens) > 1 and tokens[-1] != "=" else "{}"
            replace_str = value if replace_str is None else replace_str
        else:
            kept.append((tokens, bag))
    entry.flags.difference_update(_XARGS_REPLACE)
    entry.flags.add("-I")
    units = _sorted_units([*kept, (["-I", "{}"], _flag_bag("-I", "="))])
    if replace_str is None:
        return units, None, [*rest, _Word(None, "{}", False, False, [], False)]
    return units, (None if replace_str == "{}" else replace_str), rest


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
    return "File"


_SURFACE = {"— ": "-", "—": "-", "–": "-", "“": '"', "”": '"', "‘": "'", "’": "'"}
_PROMPT = re.compile(r"^\s*[$#] +(?=\S)")


def _surface(cmd: str) -> str:
    """Typographic dashes and quotes as ASCII (``— print`` = ``-print``, ``“x”`` = ``"x"``) and no leading
    shell prompt (``$ ls`` = ``ls``): copy-paste damage in the data, which the official scorer repairs too.
    A repair that would make a parseable command unparseable (an unpaired quote) is not made."""
    fixed = cmd
    for bad, good in _SURFACE.items():
        fixed = fixed.replace(bad, good)
    fixed = _PROMPT.sub("", fixed, count=1)
    return cmd if fixed != cmd and not parses(fixed) and parses(cmd) else fixed


@lru_cache(maxsize=65536)
def analyse(cmd: str) -> BashAnalysis:
    """Template and utilities of ``cmd`` (``parsed`` False: fallback template, no utilities)."""
    cmd = _surface(cmd)
    if not parses(cmd):
        return BashAnalysis(False, (UNPARSED, normalise_whitespace(cmd)), (), tuple(cmd.split()))
    root = _parse(cmd)
    emitter = _Emitter()
    emitter.emit(root)
    utilities = tuple(Utility(e.name, frozenset(e.flags)) for e in emitter.entries)
    content = tuple(emitter.content)
    if not content or _beyond_one_pipeline(root):
        content = tuple(cmd.split())
    return BashAnalysis(True, tuple(emitter.tokens), utilities, content)


_BEYOND_PIPELINE = frozenset(
    ["file_redirect", "heredoc_redirect", "herestring_redirect", "list", "for_statement",
     "c_style_for_statement", "while_statement", "if_statement", "case_statement", "function_definition",
     "compound_statement", "test_command", "arithmetic_expansion"]
)  # fmt: skip


def _beyond_one_pipeline(node: Any) -> bool:
    """True when the command is more than one pipeline of simple commands (with substitutions): it has
    a redirection, an ``&&``/``||`` list, two statements, a loop, ``if``/``case``, ``[ ]``/``[[ ]]``,
    ``{ }``, a function or arithmetic. The official NL2Bash parser rejects such commands, and its command
    match score then compares their whitespace-separated words (``BashAnalysis.content``)."""
    if node.type in _BEYOND_PIPELINE:
        return True
    if node.type in _CONTAINERS and sum(c.is_named and c.type != "comment" for c in node.children) > 1:
        return True
    return any(_beyond_one_pipeline(c) for c in node.children)


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
