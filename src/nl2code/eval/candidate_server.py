"""The candidate side of the judge: runs in the sandbox, after the source of ``nl2code.eval.wire``.

It executes the candidate's program once, then answers the judge's requests over its stdin/stdout,
one message a line (``nl2code.eval.wire``): call a name or a kept object, get or set an attribute,
iterate, take ``len``/``bool``/``str`` or an item. The program's own prints go to stderr, so stdout
carries only the channel. Nothing here is trusted: a program may rewrite this server, and then it
can only answer with plain values of its choosing, the same power as returning them.

Not imported by nl2code: ``judge.candidate_program`` reads this file as text.
"""

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # at run time the codec's source precedes this file's
    from nl2code.eval.wire import WireError, encode


def _nl2code_serve(source, filename, mode):
    import builtins
    import os
    import sys

    if hasattr(sys, "set_int_max_str_digits"):
        sys.set_int_max_str_digits(0)
    channel = os.fdopen(os.dup(1), "w", encoding="utf-8", newline="\n")
    requests = os.fdopen(os.dup(0), "r", encoding="utf-8", newline="\n")
    os.dup2(2, 1)  # the program's prints go to stderr
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    sys.stdout = open(1, "w", encoding="utf-8", closefd=False, buffering=1)  # noqa: SIM115
    kept, ids = [], {}

    def keep(obj):
        key = id(obj)
        if key not in ids:
            ids[key] = len(kept)
            kept.append(obj)
        return ids[key]

    def resolve(n):
        if not 0 <= n < len(kept):
            raise WireError(f"no object {n}")
        return kept[n]

    # Requests come from the judge, which is trusted, so reading them needs no guard: evaluating the
    # literal is faster than wire.decode and spares this side the ``ast`` import (~7 ms a program).
    names = {"__builtins__": {}, "Ref": resolve, "Builtin": lambda n: getattr(builtins, n), "float": float,
             "complex": complex, "set": set, "frozenset": frozenset}  # fmt: skip

    def send(msg):
        for stream in (sys.stdout, sys.stderr):  # the judge may end the run after this answer
            try:
                stream.flush()
            except Exception:  # noqa: BLE001, S110
                pass
        try:
            line = encode(msg, keep)
        except Exception as e:  # noqa: BLE001
            line = encode(("err", "WireError", f"{type(e).__name__}: {e}"[:300]))
        channel.write(line + "\n")
        channel.flush()

    printed = []
    g = {"__name__": "__main__", "__builtins__": builtins}
    if mode == "mtpb":

        def recording_print(*args, **kwargs):  # recorded, not shown: a chatty program never hits the cap
            printed.append(args)

        g["print"] = recording_print
    try:
        exec(compile(source, filename, "exec"), g)
        loaded = ("ready",)
    except BaseException as e:  # noqa: BLE001
        loaded = ("err", type(e).__name__, str(e)[:300])
    if mode == "mtpb":
        last = printed[-1] if printed and printed[-1] else None
        error = None if loaded[0] == "ready" else f"{loaded[1]}: {loaded[2]}"
        send(("printed", last is not None, last[0] if last is not None else None, error))
        return
    send(loaded)

    def target(t):
        return g[t] if isinstance(t, str) else t

    ops = {
        "call": lambda t, args, kwargs: target(t)(*args, **kwargs),
        "getattr": lambda t, name: getattr(target(t), name),
        "setattr": lambda t, name, value: setattr(target(t), name, value),
        "iter": lambda t: list(target(t)),
        "len": lambda t: len(target(t)),
        "bool": lambda t: bool(target(t)),
        "str": lambda t: str(target(t)),
        "getitem": lambda t, key: target(t)[key],
    }
    for line in requests:
        try:
            op, *args = eval(line, names)  # noqa: S307
            if isinstance(args[0], str) and args[0] not in g:
                raise NameError(f"name {args[0]!r} is not defined")
            send(("ok", ops[op](*args)))
        except BaseException as e:  # noqa: BLE001
            send(("err", type(e).__name__, str(e)[:300]))
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001, S110
            pass
    os._exit(0)  # the judge is done: skip the interpreter's teardown, which the harness waits for
