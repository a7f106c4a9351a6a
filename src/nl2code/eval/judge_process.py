"""The judge side: runs a benchmark's own (trusted) test code in a process of its own, outside the
candidate's sandbox, after the source of ``nl2code.eval.wire``.

The candidate's names reach the tests as ``Remote`` proxies whose every use is one request over
the channel; the answers are plain values (``nl2code.eval.wire``). So a candidate cannot trace,
patch or read the tests, redefine a builtin they use, or hand back an object that lies about
equality: the judge's interpreter, builtins and comparisons are its own.

A judge is a fork of one long-lived zygote per harness process (``python -I -c <wire + this
source> SOCK_FD``, started by ``judge._Zygote``), so a check costs a fork, not an interpreter start.
Each job arrives as four file descriptors over the zygote's socket: the job (JSON) to read, the
candidate's request and answer pipes, and the pipe that takes the verdict (one JSON line). Not
imported by nl2code: ``judge.zygote_program`` reads this file as text.
"""

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # at run time the codec's source precedes this file's
    from nl2code.eval.wire import MAX_LINE, Ref, WireError, decode, encode


class JudgeAbort(BaseException):
    """The channel failed (candidate gone, too slow, or garbage): a test's ``except`` cannot catch it."""

    def __init__(self, status, reason):
        super().__init__(reason)
        self.status, self.reason = status, reason


def _nl2code_zygote(sock_fd):
    """Fork a judge for every job that arrives on the socket; exit when the harness closes it."""
    import importlib
    import os
    import signal
    import socket

    # What the judges and the usual tests import, loaded once here rather than in every fork.
    for name in ("ast", "builtins", "json", "math", "random", "re", "resource", "select", "string", "time"):
        importlib.import_module(name)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
    sock = socket.socket(fileno=sock_fd)
    while True:
        try:
            msg, fds, _, _ = socket.recv_fds(sock, 16, 4)
        except OSError:
            os._exit(0)
        if not msg:
            os._exit(0)  # the harness is gone
        if len(fds) != 4:
            for fd in fds:
                os.close(fd)
            continue
        if os.fork() == 0:
            sock.close()
            try:
                _nl2code_judge(*fds)
            finally:
                os._exit(0)
        for fd in fds:
            os.close(fd)


def _nl2code_judge(job_fd, req_fd, resp_fd, verdict_fd):
    import ast
    import builtins
    import importlib
    import json
    import os
    import resource
    import select
    import sys
    import time

    if hasattr(sys, "set_int_max_str_digits"):
        sys.set_int_max_str_digits(0)
    with os.fdopen(job_fd, "r", encoding="utf-8") as f:
        job = json.loads(f.read())
    deadline = time.monotonic() + float(job["timeout"])
    cpu = int(float(job["timeout"])) + 2  # the tests are trusted, but a judge must not run forever
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    verdict_out = os.fdopen(verdict_fd, "w", encoding="utf-8")
    buf = bytearray()

    def read_line():
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise JudgeAbort("timeout", f"timed out after {job['timeout']:g}s")
            ready, _, _ = select.select([resp_fd], [], [], left)
            if not ready:
                continue
            chunk = os.read(resp_fd, 1 << 16)
            if not chunk:
                raise JudgeAbort("candidate_exit", "the candidate's process ended")
            buf.extend(chunk)
            if len(buf) > MAX_LINE:
                raise JudgeAbort("error", "answer too long")
        i = buf.index(b"\n")
        line = bytes(buf[:i]).decode("utf-8", "replace")
        del buf[: i + 1]
        return line

    def keep(obj):
        if isinstance(obj, Remote) and isinstance(object.__getattribute__(obj, "_target"), Ref):
            return object.__getattribute__(obj, "_target").n
        raise WireError(f"the tests cannot pass a {type(obj).__name__} to the candidate")

    def receive():
        try:
            return decode(read_line(), lambda n: Remote(Ref(n)))
        except WireError as e:
            raise JudgeAbort("error", f"bad answer from the candidate: {e}") from None

    def raise_remote(kind, message):
        cls = getattr(builtins, kind, None) if isinstance(kind, str) else None
        if isinstance(cls, type) and issubclass(cls, Exception) and not issubclass(cls, Warning):
            raise cls(f"{message} (in the candidate)")
        raise RuntimeError(f"{kind}: {message} (in the candidate)")

    def ask(op, *args):
        try:
            line = encode((op, *args), keep)
        except WireError as e:
            raise TypeError(str(e)) from None
        try:
            os.write(req_fd, (line + "\n").encode("utf-8"))
        except OSError:
            raise JudgeAbort("candidate_exit", "the candidate's process ended") from None
        answer = receive()
        if type(answer) is tuple and len(answer) == 2 and answer[0] == "ok":
            return answer[1]
        if type(answer) is tuple and len(answer) == 3 and answer[0] == "err":
            raise_remote(answer[1], answer[2])
        raise JudgeAbort("error", "malformed answer from the candidate")

    def typed(value, kind, what):
        if type(value) is not kind:
            raise TypeError(f"{what} of a candidate object returned {type(value).__name__}")
        return value

    class Remote:
        """A candidate object: every use is a request; equality is identity."""

        __slots__ = ("_target",)

        def __init__(self, target):
            object.__setattr__(self, "_target", target)

        def __call__(self, *args, **kwargs):
            return ask("call", self._target, args, kwargs)

        def __getattr__(self, name):
            if name.startswith("__"):
                raise AttributeError(name)
            return ask("getattr", self._target, name)

        def __setattr__(self, name, value):
            ask("setattr", self._target, name, value)

        def __iter__(self):
            return iter(typed(ask("iter", self._target), list, "iteration"))

        def __len__(self):
            return typed(ask("len", self._target), int, "len()")

        def __bool__(self):
            return typed(ask("bool", self._target), bool, "bool()")

        def __str__(self):
            return typed(ask("str", self._target), str, "str()")

        def __getitem__(self, key):
            return ask("getitem", self._target, key)

        def __eq__(self, other):
            return self is other

        def __ne__(self, other):
            return self is not other

        __hash__ = object.__hash__

        def __repr__(self):
            return "<candidate object>"

    def free_names(source):
        """Names the code reads but never binds (a name bound anywhere counts as bound)."""
        loads, bound = set(), set()
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Name):
                (loads if isinstance(node.ctx, ast.Load) else bound).add(node.id)
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                bound.add(node.name)
            elif isinstance(node, ast.arg):
                bound.add(node.arg)
            elif isinstance(node, ast.alias):
                bound.add((node.asname or node.name).split(".")[0])
            elif isinstance(node, ast.ExceptHandler) and node.name:
                bound.add(node.name)
        return loads - bound - set(dir(builtins))

    def run():
        code = job.get("setup", "") + "\n" + job["test"]
        g = {"__name__": "__judge__"}
        for name in sorted(free_names(code) - set(job.get("names", ()))):
            # A free name that names a standard module is imported here: the candidate's namesake
            # (a fake ``math`` with an ``isclose`` that always agrees) never reaches the tests.
            if name in sys.stdlib_module_names:
                g[name] = importlib.import_module(name)
            else:
                g[name] = Remote(name)
        hello = receive()
        if hello != ("ready",):
            if type(hello) is tuple and len(hello) == 3 and hello[0] == "err":
                return False, "error", f"candidate failed to load: {hello[1]}: {hello[2]}"
            return False, "error", "malformed greeting from the candidate"
        g.update({name: Remote(name) for name in job.get("names", ())})
        exec(compile(job.get("setup", ""), "<setup>", "exec"), g)
        if job.get("entry_point"):  # the prompt's stub stands for the candidate's function (HumanEval/33)
            g[job["entry_point"]] = Remote(job["entry_point"])
        exec(compile(job["test"], "<tests>", "exec"), g)
        if job.get("call"):
            g[job["call"]](Remote(job["entry_point"]))
        return True, "ok", "passed"

    try:
        passed, status, reason = run()
    except JudgeAbort as e:
        passed, status, reason = False, e.status, e.reason
    except MemoryError as e:
        passed, status, reason = False, "memory", f"MemoryError: {e}"[:300]
    except AssertionError as e:
        passed, status, reason = False, "error", f"AssertionError: {e}"[:300] if str(e) else "assertion failed"
    except BaseException as e:  # noqa: BLE001
        passed, status, reason = False, "error", f"{type(e).__name__}: {e}"[:300]
    verdict_out.write(json.dumps({"passed": passed, "status": status, "reason": reason}) + "\n")
    verdict_out.flush()
    os.close(req_fd)
    os._exit(0)
