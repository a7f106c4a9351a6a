"""The narrow channel between the judge and a sandboxed candidate: plain literal values, one line each.

A message is Python literal syntax restricted to ``None``, ``bool``, ``int``, ``float``, ``complex``,
``str``, ``bytes``, and ``list``/``tuple``/``dict``/``set``/``frozenset`` of them, a builtin type or
function by name (``Builtin('int')``, resolved in the receiver's own builtins), plus ``Ref(n)``: a
reference to an object that stays in the process that owns it (a function, a class instance, a
generator). Decoding walks the parsed syntax tree and builds only those plain types, so nothing the
other side sends can carry methods of its own: a value whose ``__eq__`` always answers true arrives
as a ``Ref``, which the judge compares by identity. Subclasses of the plain types are sent as their
base type (a namedtuple as a tuple, a Counter as a dict), numpy/pandas values through ``tolist()``.

This module imports only the standard library and defines no top-level names beyond the codec: the
judge imports it, and its source text is prepended to every candidate program (the sandbox cannot
import nl2code).
"""

import builtins as _wire_builtins

MAX_DEPTH = 200
MAX_LINE = 16 << 20  # bytes of one message


class WireError(ValueError):
    """A value that cannot cross the channel, or a message that is not a valid one."""


class Ref:
    """The ``n``-th object kept by the side that sent it."""

    __slots__ = ("n",)

    def __init__(self, n):
        self.n = n

    def __repr__(self):
        return f"Ref({self.n})"


def _float_text(x):
    text = float.__repr__(x)
    return text if text not in ("nan", "inf", "-inf") else f"float({text!r})"


def encode(value, keep=None):
    """One line of text for ``value``; ``keep(obj) -> int`` stores a non-plain object and names it
    (without ``keep`` such an object raises WireError)."""

    def enc(v, depth):
        if depth > MAX_DEPTH:
            raise WireError("value nested too deeply")
        if v is None or v is True or v is False:
            return repr(v)
        if isinstance(v, bool):
            return "True" if bool.__bool__(v) else "False"
        if isinstance(v, int):
            return int.__repr__(v)
        if isinstance(v, float):
            return _float_text(v)
        if isinstance(v, complex):
            return f"complex({complex.__repr__(v)!r})"
        if isinstance(v, str):
            return str.__repr__(str.__str__(v))
        if isinstance(v, bytes):
            return bytes.__repr__(bytes(v))
        if isinstance(v, Ref):
            return f"Ref({int(v.n)})"
        if isinstance(v, list):
            return "[" + ", ".join(enc(x, depth + 1) for x in list.__iter__(v)) + "]"
        if isinstance(v, tuple):
            items = [enc(x, depth + 1) for x in tuple.__iter__(v)]
            return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"
        if isinstance(v, set | frozenset):
            items = [enc(x, depth + 1) for x in (set.__iter__(v) if isinstance(v, set) else frozenset.__iter__(v))]
            if isinstance(v, frozenset):
                return "frozenset([" + ", ".join(items) + "])"
            return "{" + ", ".join(items) + "}" if items else "set()"
        if isinstance(v, dict):
            pairs = [f"{enc(k, depth + 1)}: {enc(x, depth + 1)}" for k, x in list(dict.items(v))]
            return "{" + ", ".join(pairs) + "}"
        name = getattr(v, "__name__", None)
        if isinstance(name, str) and getattr(_wire_builtins, name, None) is v:
            return f"Builtin({name!r})"
        if type(v).__module__.split(".")[0] in ("numpy", "pandas") and hasattr(v, "tolist"):
            return enc(v.tolist(), depth + 1)
        if keep is not None:
            return f"Ref({int(keep(v))})"
        raise WireError(f"a {type(v).__name__} object cannot be sent, only plain values")

    try:
        return enc(value, 0)
    except RecursionError:
        raise WireError("value nested too deeply") from None


def decode(text, resolve=None):
    """The value of one message; ``resolve(n)`` turns ``Ref(n)`` into an object (default: a Ref)."""
    import ast as _wire_ast  # here, not at the top: the sandboxed side never decodes (see candidate_server)

    if len(text) > MAX_LINE:
        raise WireError("message too long")
    try:
        tree = _wire_ast.parse(text, mode="eval")
    except (SyntaxError, ValueError, MemoryError, RecursionError) as e:
        raise WireError(f"not a literal message ({type(e).__name__})") from None

    def call_arg(node, fn, kinds):
        if node.keywords or len(node.args) != 1:
            raise WireError(f"bad {fn}() in message")
        arg = node.args[0]
        if not isinstance(arg, _wire_ast.Constant) or type(arg.value) not in kinds:
            raise WireError(f"bad {fn}() in message")
        return arg.value

    def dec(node, depth):
        if depth > MAX_DEPTH:
            raise WireError("message nested too deeply")
        if isinstance(node, _wire_ast.Constant):
            if type(node.value) in (type(None), bool, int, float, complex, str, bytes):
                return node.value
        elif isinstance(node, _wire_ast.UnaryOp) and isinstance(node.op, _wire_ast.USub | _wire_ast.UAdd):
            inner = dec(node.operand, depth + 1)
            if type(inner) in (int, float, complex):
                return -inner if isinstance(node.op, _wire_ast.USub) else inner
        elif isinstance(node, _wire_ast.List):
            return [dec(e, depth + 1) for e in node.elts]
        elif isinstance(node, _wire_ast.Tuple):
            return tuple(dec(e, depth + 1) for e in node.elts)
        elif isinstance(node, _wire_ast.Set):
            return {dec(e, depth + 1) for e in node.elts}
        elif isinstance(node, _wire_ast.Dict):
            if any(k is None for k in node.keys):
                raise WireError("bad dict in message")
            return {dec(k, depth + 1): dec(v, depth + 1) for k, v in zip(node.keys, node.values)}
        elif isinstance(node, _wire_ast.Call) and isinstance(node.func, _wire_ast.Name):
            fn = node.func.id
            if fn == "set" and not node.args and not node.keywords:
                return set()
            if fn == "frozenset":
                if not node.args and not node.keywords:
                    return frozenset()
                if len(node.args) == 1 and not node.keywords and isinstance(node.args[0], _wire_ast.List):
                    return frozenset(dec(node.args[0], depth + 1))
            if fn == "float":
                return float(call_arg(node, fn, (str,)))
            if fn == "complex":
                return complex(call_arg(node, fn, (str,)))
            if fn == "Builtin":
                name = call_arg(node, fn, (str,))
                if name.startswith("_") or not hasattr(_wire_builtins, name):
                    raise WireError(f"no builtin {name!r}")
                return getattr(_wire_builtins, name)
            if fn == "Ref":
                n = call_arg(node, fn, (int,))
                return resolve(n) if resolve is not None else Ref(n)
        raise WireError(f"{type(node).__name__} is not allowed in a message")

    try:
        return dec(tree.body, 0)
    except WireError:
        raise
    except (TypeError, ValueError, RecursionError, MemoryError) as e:  # unhashable key, bad float text
        raise WireError(f"bad message ({type(e).__name__}: {e})") from None
