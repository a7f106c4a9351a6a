"""XLCoST detokenizer: hand-written tokenized programs and round trips through a test tokenizer."""

from __future__ import annotations

import ast
import io
import json
import re
import tokenize

import pytest

from nl2code.data.records import DataError
from nl2code.data.sources import SourceError, detokenize_xlcost, load_source


def xlcost_tokenize(source: str) -> str:
    """Test-only tokenizer producing XLCoST/TransCoder-style tokens from Python source."""
    out = []
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.NEWLINE:
            out.append("NEW_LINE")
        elif tok.type in (tokenize.INDENT, tokenize.DEDENT):
            out.append(tokenize.tok_name[tok.type])
        elif tok.type == tokenize.STRING:
            m = re.match(r"^([a-zA-Z]*)(\"\"\"|'''|\"|')(.*)\2$", tok.string, re.S)
            prefix, quote, body = m.groups()
            parts = re.findall(r"\w+|\s|[^\w\s]", body)
            marks = {" ": "\u2581", "\n": "STRNEWLINE", "\t": "TABSYMBOL"}
            out += [prefix + quote, *(marks.get(p, p) for p in parts), quote]
        elif tok.type not in (tokenize.COMMENT, tokenize.NL, tokenize.ENDMARKER, tokenize.ENCODING):
            out.append(tok.string)
    return " ".join(out)


PROGRAMS = [
    # nested blocks, returns after dedents, slices, unary minus, keyword arguments
    """
def max_sum(arr, n):
    res = 0
    for i in range(n):
        if arr[i] > 0:
            while res < 10:
                res += arr[i]
        else:
            res -= arr[-1]
    return res

if __name__ == '__main__':
    arr = [1, -2, 3]
    print(max_sum(arr, len(arr)), end=" ")
    print(arr[1:-1], arr[::2], {'a': 1, **{}}, *arr)
""",
    # classes, decorators, lambda, dict/set comprehensions, strings with spaces and quotes
    """
import math
from collections import defaultdict as dd

class Graph:
    def __init__(self, v):
        self.v = v
        self.adj = dd(list)

    @staticmethod
    def name():
        return "it's a graph:  two spaces"

    def add(self, u, w=1, *args, **kw):
        self.adj[u].append((w, -u))
        key = lambda x: (x[0], -x[1])
        return sorted(self.adj[u], key=key), {k: v for k, v in kw.items()}, {x for x in args}

g = Graph(4)
print(g.add(1, w=2), Graph.name(), math.sqrt(16) ** 2, 1 .real, not (1 and 0))
try:
    x = g.v // 3 % 2
except (ValueError, TypeError) as e:
    raise RuntimeError("bad\\tvalue") from e
finally:
    pass
""",
    # triple-quoted string across lines, async def, global, walrus, conditional expression
    '''
text = """first line
  second line"""

async def run(n):
    global text
    if (m := n * 2) > 3:
        return m if m else -m
    return [i async for i in agen()]
''',
]


@pytest.mark.parametrize("source", PROGRAMS)
def test_round_trip_gives_same_ast(source):
    tokens = xlcost_tokenize(source)
    assert "NEW_LINE" in tokens and "INDENT" in tokens
    code = detokenize_xlcost(tokens)
    assert ast.dump(ast.parse(code)) == ast.dump(ast.parse(source))


def test_handwritten_example():
    tokens = (
        "def findNthNumber ( N ) : NEW_LINE INDENT result = 0 NEW_LINE p = 1 NEW_LINE "
        "while ( N > 0 ) : NEW_LINE INDENT result += ( p * ( N % 9 ) ) NEW_LINE N = N // 9 NEW_LINE "
        "DEDENT return result NEW_LINE DEDENT if __name__ == ' _ _ main _ _ ' : NEW_LINE INDENT "
        'N = 9 NEW_LINE print ( " Result ▁ is " , findNthNumber ( N ) ) NEW_LINE DEDENT'
    )
    assert detokenize_xlcost(tokens) == (
        "def findNthNumber(N):\n"
        "    result = 0\n"
        "    p = 1\n"
        "    while (N > 0):\n"
        "        result += (p * (N % 9))\n"
        "        N = N // 9\n"
        "    return result\n"
        "if __name__ == '__main__':\n"
        "    N = 9\n"
        '    print("Result is", findNthNumber(N))\n'
    )


def test_strings_and_markers():
    assert detokenize_xlcost('x = " a ▁ b "') == 'x = "a b"\n'
    assert detokenize_xlcost('s = f " { x } ▁ y "') == 's = f"{x} y"\n'  # prefix written apart
    assert detokenize_xlcost("s = ''' a STRNEWLINE TABSYMBOL b '''") == "s = '''a\n\tb'''\n"
    assert detokenize_xlcost('print ( " it \' s " )') == 'print("it\'s")\n'
    # the documented loss: without ▁ the spaces inside a string cannot be told apart from separators
    assert detokenize_xlcost('x = " a b "') == 'x = "ab"\n'
    assert detokenize_xlcost("") == ""


def test_extra_dedent_is_ignored_and_indent_ends_line():
    assert detokenize_xlcost("if x : INDENT y = 1 DEDENT DEDENT z = 2") == "if x:\n    y = 1\nz = 2\n"


def test_other_language():
    code = detokenize_xlcost(
        'int main ( ) { NEW_LINE INDENT cout << " Yes ▁ no " << a [ 0 ] . x ; NEW_LINE DEDENT }', "cpp"
    )
    assert code == 'int main() {\n    cout << "Yes no" << a[0].x;\n}\n'
    with pytest.raises(SourceError, match="unknown XLCoST language"):
        detokenize_xlcost("x", "cobol")


def test_load_xlcost(tmp_path):
    rows = [{"text": "add one", "code": xlcost_tokenize("def f(x):\n    return x + 1\n")},
            {"text": "broken", "code": "def f ( : NEW_LINE"}]  # fmt: skip
    folder = tmp_path / "xl"
    folder.mkdir()
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "valid.jsonl").write_text(json.dumps(rows[0]) + "\n")
    result = load_source("xlcost", folder)
    assert result.split_counts() == {"train": 2, "validation": 1}
    rec = result.split("train")[0]
    assert rec.code == "def f(x):\n    return x + 1\n" and rec.extras["tokens"] == rows[0]["code"]
    assert rec.task_id == "xlcost-python/train/0" and rec.nl == "add one"
    assert result.notes == ["train.jsonl: 1 rows do not parse as Python after detokenization"]
    raw = load_source("xlcost", folder / "train.jsonl", detokenize=False)
    assert raw.records[0].code == rows[0]["code"]
    (folder / "test.jsonl").write_text('{"text": "x"}\n')
    with pytest.raises(DataError, match=r"test.jsonl:1 field 'code': missing"):
        load_source("xlcost", folder)
