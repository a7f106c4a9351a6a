"""The one place untrusted generated code runs: one fresh, confined subprocess per program.

Levels of isolation, strongest first (``available_levels()`` lists those that work here, probed once):

- ``bwrap``: bubblewrap with new network, PID, IPC and UTS namespaces, a read-only view of only the
  system directories and the Python prefix (not home, not the project), a private size-capped
  ``/tmp``, an empty environment, a new session, ``--die-with-parent``.
- ``unshare-net``: new network, PID and mount namespaces (``unshare``) with a private ``/proc``; no
  filesystem isolation.
- ``rlimits``: resource limits and a private uid only; offered only when the harness runs as root.

When the harness runs as root the program also drops to a private unprivileged uid (``setpriv``),
since ``RLIMIT_NPROC`` does not bind uid 0 and root may write anywhere; the label then carries a
``+uid`` suffix (``bwrap+uid``). Outside bwrap an interpreter under a directory that uid may not
enter (a Python under ``/root``) is made reachable inside the program's mount namespace. Unprivileged,
bwrap runs in a user namespace and ``unshare-net`` in one too. No level lets a program kill or
outlive the harness: either it sits in its own PID namespace, or it runs under its own uid, and a
level where neither holds (root without a working uid drop outside bwrap, an unprivileged harness
without namespaces) is not offered.

**Fail closed.** Programs run at the *required* level, ``bwrap+uid`` as root and ``bwrap``
otherwise, unless the caller names a weaker level explicitly (``isolation="unshare-net"``,
``nl2code eval --isolation unshare-net``). Without that opt-in, ``run``, ``run_many`` and
``prepared`` raise ``IsolationError`` with one line naming what is missing and how to get it;
``require`` does the same check up front, ``isolation_problem`` says why it fails, and
``python -m nl2code.eval.sandbox`` prints it.

On every level the program gets rlimits (CPU time, address space, processes, file size, open files,
no core), stdin from /dev/null, a capped capture of stdout/stderr, and a wall-clock deadline after
which its whole process group is killed. Then every process still running under the run's uid (or,
without a uid, carrying the run's token in its environment) is killed.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import selectors
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")
LEVELS = ("bwrap", "unshare-net", "rlimits")
# One line per level: what it is, and what it lacks next to bwrap (the CLI's --isolation help).
LEVEL_HELP = {
    "bwrap": "bubblewrap: namespaces, read-only system directories only, private /tmp (the required level)",
    "unshare-net": "network and PID namespaces only: no filesystem isolation, the program sees the whole "
    "filesystem (as a private uid when run as root, as you otherwise)",
    "rlimits": "root only: a private uid and resource limits, no namespaces: network access and the whole "
    "filesystem visible",
}
STATUSES = ("ok", "error", "timeout", "memory", "output_limit", "signal", "sandbox_error")
_SUFFIX = {"python": "prog.py", "bash": "prog.sh"}
# Environment inside the sandbox: nothing inherited from the harness (no tokens, no paths).
_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "HOME": "/tmp",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "TMPDIR": "/tmp",
    # One BLAS thread: every thread counts against RLIMIT_NPROC and we run many programs at once.
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "PYTHONIOENCODING": "utf-8",
}
# /etc entries bound read-only: the loader cache, /usr/bin/awk's alternatives link, names for ids.
_ETC = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "alternatives", "localtime", "passwd", "group",
        "nsswitch.conf")  # fmt: skip


@dataclass(frozen=True)
class Limits:
    """Per-program resource limits."""

    timeout: float = 3.0  # wall-clock seconds; CPU limit is ceil(timeout) + 1
    mem_mb: int = 1024  # address space (numpy/pandas need ~1 GiB of virtual memory)
    nproc: int = 32  # processes + threads of the run's uid
    fsize_mb: int = 16  # largest file the program may write
    nofile: int = 64  # open file descriptors
    output_bytes: int = 64 * 1024  # captured stdout and stderr, each; more = "output_limit"
    tmp_mb: int = 64  # size of the private /tmp (bwrap only)


@dataclass
class ExecResult:
    """Outcome of one program.

    ``status`` is one of ``STATUSES``; ``reason`` says why in a few words (e.g. the exception line);
    ``isolation`` is the level it ran under (see the module docstring).
    """

    status: str
    stdout: str
    stderr: str
    seconds: float
    reason: str
    isolation: str
    returncode: int | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass
class Job:
    """One program for ``run_many``."""

    program: str
    lang: str = "python"
    limits: Limits = field(default_factory=Limits)


class SandboxError(RuntimeError):
    """The sandbox itself could not be set up (not the program's fault)."""


class IsolationError(SandboxError):
    """Generated code would run under weaker isolation than required, or a named level is not
    offered here. The message is one line: what is missing and how to get it."""


# ---------------------------------------------------------------------------------------------
# Probing which isolation works here


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _python_roots() -> list[str]:
    """Directories the interpreter needs (prefixes, as given and resolved, and the real executable's
    installation), without those under /usr (bound anyway) or nested in another."""
    given = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    given.add(str(Path(os.path.realpath(sys.executable)).parent.parent))
    roots = {os.path.abspath(r) for r in given} | {os.path.realpath(r) for r in given}
    out: list[str] = []
    for r in sorted(roots, key=len):
        if r in ("/", "/usr") or r.startswith("/usr/") or any(r.startswith(o + "/") or r == o for o in out):
            continue
        out.append(r)
    return out


def _bwrap_argv(prog_dir: str, limits: Limits, keep_caps: bool = True) -> list[str]:
    """bubblewrap's part of the command. Run as root, bwrap keeps root's capabilities: setpriv needs
    them to drop the uid (``keep_caps``); without that drop they are dropped here."""
    argv = ["bwrap", "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
            "--die-with-parent", "--new-session"]  # fmt: skip
    if not _is_root():
        argv.append("--unshare-user")  # unprivileged path: a user namespace is required
    elif not keep_caps:
        argv += ["--cap-drop", "ALL"]
    # Mounts apply in order: the private /tmp first so later binds under it stay visible.
    argv += ["--perms", "1777", "--size", str(limits.tmp_mb << 20), "--tmpfs", "/tmp"]
    argv += ["--ro-bind", "/usr", "/usr"]
    for d in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(d):
            argv += ["--symlink", os.readlink(d), d]
        elif os.path.isdir(d):
            argv += ["--ro-bind", d, d]
    argv += ["--perms", "0755", "--dir", "/etc"]  # created mode 0700 otherwise (as for any parent)
    for name in _ETC:
        argv += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    made: set[str] = {"/", "/tmp", "/usr", "/etc"}
    for root in _python_roots():
        # bwrap creates missing parents mode 0700 when run as root: make them traversable.
        parents = [str(p) for p in reversed(Path(root).parents)]
        for p in parents:
            if p not in made:
                argv += ["--perms", "0755", "--dir", p]
                made.add(p)
        argv += ["--ro-bind", root, root]
        made.add(root)
    argv += ["--ro-bind", prog_dir, "/sandbox", "--dev", "/dev", "--proc", "/proc", "--chdir", "/tmp", "--clearenv"]
    for k, v in _ENV.items():
        argv += ["--setenv", k, v]
    argv.append("--")
    return argv


def _closed_ancestor(path: str) -> str | None:
    """The outermost directory above ``path`` that others may not enter (e.g. ``/root``, mode 700)."""
    for parent in reversed(Path(path).parents):
        if str(parent) == "/":
            continue
        try:
            if not os.stat(parent).st_mode & stat.S_IXOTH:
                return str(parent)
        except OSError:
            return None
    return None


def _reach_argv(stage: str) -> list[str]:
    """A ``sh -c`` prefix, run as root in the program's private mount namespace, that lets an
    unprivileged uid reach the interpreter: each closed directory above a Python root is covered by
    an empty tmpfs (mode 755) in which the roots are bound back, read-only. [] when none is closed."""
    blocked = [(root, top) for root in _python_roots() if (top := _closed_ancestor(root))]
    if not blocked:
        return []
    q = shlex.quote
    lines = ["set -e", "umask 022"]
    for i, (root, _) in enumerate(blocked):  # bind first: the tmpfs hides the originals
        lines += [f"mkdir -p {q(f'{stage}/{i}')}", f"mount --bind {q(root)} {q(f'{stage}/{i}')}"]
    for top in sorted({top for _, top in blocked}):
        lines.append(f"mount -t tmpfs -o mode=0755,size=1m nl2code-reach {q(top)}")
    for i, (root, _) in enumerate(blocked):
        lines += [f"mkdir -p {q(root)}", f"mount --move {q(f'{stage}/{i}')} {q(root)}",
                  f"mount -o remount,bind,ro {q(root)}", f"rmdir {q(f'{stage}/{i}')}"]  # fmt: skip
    lines += [f"rmdir {q(stage)}", 'exec "$@"']
    return ["/bin/sh", "-c", "\n".join(lines), "sh"]


def _unshare_argv(stage: str | None = None) -> list[str]:
    """``unshare`` with new network, PID and mount namespaces and a private /proc: kill(-1) and
    daemonized children stay inside and die with it (``--kill-child``), the harness is not visible.
    As root (the program then drops its uid) ``stage`` is a scratch folder for ``_reach_argv``;
    unprivileged, a user namespace holds the others."""
    ns = ["--mount", "--mount-proc", "--net", "--pid", "--fork", "--kill-child", "--"]
    if not _is_root():
        return ["unshare", "--user", "--map-current-user", *ns]
    return ["unshare", *ns, *(_reach_argv(stage) if stage else [])]


def _setpriv_argv(uid: int) -> list[str]:
    return ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--inh-caps=-all",
            "--bounding-set=-all", "--no-new-privs", "--"]  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Policy: which levels work here, which one is required, and refusing anything weaker


@dataclass(frozen=True)
class _Probe:
    label: str | None  # what the level runs as here ("unshare-net+uid"); None = not offered
    why: str  # why it is not offered, or why it runs weaker than it could ("" when neither)


def _try(level: str, uid: int | None) -> str | None:
    """Run an empty Python program at ``level`` exactly as a real run would; None when it worked,
    else the first line of what went wrong."""
    prog_dir = tempfile.mkdtemp(prefix="nl2code-probe-")
    try:
        cmd, env, cwd, _ = _command(prog_dir, "pass", "python", Limits(timeout=10.0), level, uid, None)
        r = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, env=env, cwd=cwd, timeout=20,
                           start_new_session=True)  # fmt: skip
    except (OSError, subprocess.SubprocessError) as e:
        return str(e) or type(e).__name__
    finally:
        if uid is not None:
            _kill_leftovers(uid, None)
        shutil.rmtree(prog_dir, ignore_errors=True)
    if r.returncode == 0:
        return None
    lines = [ln.strip() for ln in r.stderr.decode(errors="replace").splitlines() if ln.strip()]
    return (lines[0] if lines else f"exit status {r.returncode}")[:200]


_USERNS_HINT = ("unprivileged user namespaces look disabled: enable them (sysctl kernel.unprivileged_userns_clone=1; "
                "on Ubuntu also kernel.apparmor_restrict_unprivileged_userns=0) or run as root")  # fmt: skip


_probe_lock = threading.Lock()


def _probes() -> dict[str, _Probe]:
    """Each level's label here, or why it is not offered (probed once per process, by one thread)."""
    with _probe_lock:
        return _probed()


@functools.cache
def _probed() -> dict[str, _Probe]:
    uid = _take_uid() if _is_root() else None
    try:
        return {"bwrap": _probe_bwrap(uid), "unshare-net": _probe_unshare(uid), "rlimits": _probe_rlimits(uid)}
    finally:
        if uid is not None:
            _give_uid(uid)


_NO_SETPRIV = "setpriv is not installed (apt-get install util-linux)"


def _probe_bwrap(uid: int | None) -> _Probe:
    if shutil.which("bwrap") is None:
        return _Probe(None, "bubblewrap is not installed (apt-get install bubblewrap)")
    if uid is None:  # unprivileged: bwrap needs a user namespace
        err = _try("bwrap", None)
        return _Probe("bwrap", "") if err is None else _Probe(None, f"bubblewrap cannot build its sandbox here "
                                                                    f"({err}); {_USERNS_HINT}")  # fmt: skip
    if shutil.which("setpriv") is None:
        why = _NO_SETPRIV
    else:
        err = _try("bwrap", uid)
        if err is None:
            return _Probe("bwrap+uid", "")
        why = f"bubblewrap cannot drop to an unprivileged uid here ({err})"
    # bwrap leaves root no capabilities, but uid 0 escapes RLIMIT_NPROC: offered, weaker than required.
    err = _try("bwrap", None)
    return _Probe("bwrap", why) if err is None else _Probe(None, f"bubblewrap is installed but fails here ({err})")


def _probe_unshare(uid: int | None) -> _Probe:
    if shutil.which("unshare") is None:
        return _Probe(None, "unshare is not installed (apt-get install util-linux)")
    if uid is None:
        err = _try("unshare-net", None)
        return _Probe("unshare-net", "") if err is None else _Probe(None, f"unshare cannot create namespaces here "
                                                                          f"({err}); {_USERNS_HINT}")  # fmt: skip
    # Root without the uid drop could leave its namespaces (setns) and fork past any limit: not offered.
    if shutil.which("setpriv") is None:
        return _Probe(None, _NO_SETPRIV)
    err = _try("unshare-net", uid)
    return _Probe("unshare-net+uid", "") if err is None else _Probe(None, f"the program cannot run as an unprivileged "
                                                                          f"uid under unshare ({err})")  # fmt: skip


def _probe_rlimits(uid: int | None) -> _Probe:
    if uid is None:
        return _Probe(None, "needs root, to run the program as its own uid (sharing yours lets it kill the harness)")
    if shutil.which("setpriv") is None:
        return _Probe(None, _NO_SETPRIV)
    err = _try("rlimits", uid)
    if err is None:
        return _Probe("rlimits+uid", "")
    return _Probe(None, f"the interpreter {sys.executable} is not reachable by an unprivileged uid ({err})")


def _reset_probes() -> None:
    """Forget what was probed (tests that hide a binary call this)."""
    with _probe_lock:
        _probed.cache_clear()


def available_levels() -> tuple[str, ...]:
    """Levels offered on this machine, strongest first (probed once per process); may be empty."""
    probes = _probes()
    return tuple(level for level in LEVELS if probes[level].label is not None)


def _can_drop_uid(level: str) -> bool:
    """Whether a program at ``level`` runs as a private unprivileged uid (root harness only)."""
    label = _probes()[level].label if level in LEVELS else None
    return label is not None and label.endswith("+uid")


def required_isolation() -> str:
    """The level generated code needs unless a weaker one is named: bubblewrap with a private uid as
    root; bubblewrap (whose user namespace gives the program an unprivileged uid) otherwise."""
    return "bwrap+uid" if _is_root() else "bwrap"


def best_isolation() -> str:
    """The label of the strongest level offered here (``"none"`` when none is)."""
    levels = available_levels()
    label = _probes()[levels[0]].label if levels else None
    return label or "none"


def lacks(label: str) -> str:
    """What a program at ``label`` lacks next to the required level ("" when it lacks nothing)."""
    if label == required_isolation():
        return ""
    base = label.partition("+")[0]
    if base == "bwrap":
        return "the program runs as root inside bubblewrap, and RLIMIT_NPROC does not bind root"
    if base == "unshare-net":
        who = "a private unprivileged uid" if label.endswith("+uid") else "you, with access to your files"
        return f"no filesystem isolation: the program sees the whole filesystem and runs as {who}"
    return "no namespaces: the program has network access and sees the whole filesystem and every process"


def _refusal() -> str:
    probes, required = _probes(), required_isolation()
    missing = probes["bwrap"].why or "bubblewrap does not work here"
    line = f"refusing to run generated code: it needs isolation {required}, but {missing}"
    weaker = [level for level in available_levels() if probes[level].label != required]
    if weaker:
        label = probes[weaker[0]].label or weaker[0]
        line += f"; to accept {label} instead ({lacks(label)}), name it: --isolation {weaker[0]}"
    else:
        line += f"; no weaker level works either ({probes['unshare-net'].why})"
    return line


def require(opt_in: str | None = None) -> str:
    """The label generated code runs under: the required level, or the level ``opt_in`` names.

    Raises ``IsolationError`` (one line) when ``opt_in`` is None and the strongest level here is
    weaker than ``required_isolation()``, or when the named level is unknown or not offered here.
    ``opt_in`` is a level name (``"unshare-net"``) or a label (``"unshare-net+uid"``: insists on the
    uid drop); the uid drop applies wherever it works, named or not.
    """
    probes = _probes()
    if opt_in is None:
        best = best_isolation()
        if best != required_isolation():
            raise IsolationError(_refusal())
        return best
    base, plus, suffix = opt_in.partition("+")
    if base not in LEVELS or (plus and suffix != "uid"):
        raise IsolationError(f"unknown isolation {opt_in!r}; one of {', '.join(LEVELS)}")
    label = probes[base].label
    if label is None or (plus and not label.endswith("+uid")):
        raise IsolationError(f"isolation {opt_in} is not available here: {probes[base].why}")
    return label


def isolation_problem() -> str:
    """The one-line refusal when generated code may not run here at the required level, else ""
    (tests that execute code without naming a level skip with it as their reason)."""
    try:
        require()
    except IsolationError as e:
        return str(e)
    return ""


def describe(label: str) -> str:
    """One line announcing the level a run uses (weaker than required: says so and what it lacks)."""
    if not lacks(label):
        return f"isolation: {label}"
    return f"warning: isolation {label} (named explicitly, weaker than {required_isolation()}): {lacks(label)}"


# ---------------------------------------------------------------------------------------------
# Private uids: one per concurrent run, so RLIMIT_NPROC, kill(-1) and cleanup stay per run.

_uid_lock = threading.Lock()
_uid_free: list[int] = []
_uid_counter = itertools.count()
# A per-process range keeps two concurrent harness processes from sharing uids. The range sits far
# above system users and the usual /etc/subuid allocations (100000 + 65536 per user), because
# cleanup kills every process of a run's uid.
_UID_BASE = 3_000_000_000 + (os.getpid() % 100_000) * 256


def _take_uid() -> int:
    with _uid_lock:
        return _uid_free.pop() if _uid_free else _UID_BASE + next(_uid_counter) % 256


def _give_uid(uid: int) -> None:
    with _uid_lock:
        _uid_free.append(uid)


def _pids_matching(uid: int | None, token: str | None) -> list[int]:
    """Live pids whose real uid is ``uid``, or whose environment holds ``token``."""
    out = []
    me = os.getpid()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            if uid is not None:
                with open(f"/proc/{entry.name}/status", "rb") as f:
                    for line in f:
                        if line.startswith(b"Uid:"):
                            if int(line.split()[1]) == uid:
                                out.append(int(entry.name))
                            break
            elif token is not None:
                with open(f"/proc/{entry.name}/environ", "rb") as f:
                    if token.encode() in f.read():
                        out.append(int(entry.name))
        except (OSError, ValueError):
            continue  # gone meanwhile, or not ours to read
    return out


def _kill_leftovers(uid: int | None, token: str | None) -> None:
    """SIGKILL every process of the run until none is left (forks may race the first sweep)."""
    if not os.path.isdir("/proc"):
        return
    for _ in range(50):
        pids = _pids_matching(uid, token)
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.01)


# ---------------------------------------------------------------------------------------------
# Running one program


def _rlimits(limits: Limits) -> list[tuple[str, int, int]]:
    """(name, soft, hard) of every limit; the CPU limit leaves 1 s past the wall-clock timeout."""
    cpu = int(limits.timeout) + 2
    return [
        ("cpu", cpu - 1, cpu),
        ("as", limits.mem_mb << 20, limits.mem_mb << 20),
        ("nproc", limits.nproc, limits.nproc),
        ("fsize", limits.fsize_mb << 20, limits.fsize_mb << 20),
        ("nofile", limits.nofile, limits.nofile),
        ("core", 0, 0),
    ]


def _limit_argv(limits: Limits) -> list[str]:
    """``prlimit`` (util-linux) sets the limits right before the program's exec; [] without it."""
    if not shutil.which("prlimit"):
        return []
    return ["prlimit", *(f"--{n}={s}:{h}" for n, s, h in _rlimits(limits)), "--"]


def _set_rlimits(limits: Limits) -> None:
    """Fallback without prlimit: set the limits in the child before exec (preexec_fn)."""
    import resource

    for name, soft, hard in _rlimits(limits):
        resource.setrlimit(getattr(resource, f"RLIMIT_{name.upper()}"), (soft, hard))


def _classify(rc: int, stderr: str, timed_out: bool, overflow: bool, limits: Limits) -> tuple[str, str]:
    if overflow:
        return "output_limit", f"output exceeded {limits.output_bytes} bytes"
    if timed_out:
        return "timeout", f"wall-clock timeout after {limits.timeout:g}s"
    if rc == 0:
        return "ok", ""
    last = next((ln.strip() for ln in reversed(stderr.splitlines()) if ln.strip()), "")
    if "MemoryError" in stderr or "Cannot allocate memory" in stderr:
        return "memory", last[:200] or "memory limit"
    if stderr.startswith("bwrap:") or stderr.startswith("prlimit:") or stderr.startswith("setpriv:"):
        return "sandbox_error", last[:200]
    # A signal shows as -N from Popen, or 128+N from bwrap's reaper.
    sig = -rc if rc < 0 else rc - 128 if 128 < rc < 128 + 65 else None
    if sig is not None and sig in (signal.SIGXCPU, signal.SIGKILL) and not last:
        name = signal.Signals(sig).name
        return ("timeout", "CPU time limit") if sig == signal.SIGXCPU else ("signal", f"killed by {name}")
    if sig is not None and not last:
        try:
            return "signal", f"killed by {signal.Signals(sig).name}"
        except ValueError:
            return "signal", f"killed by signal {sig}"
    return "error", last[:200] or f"exit status {rc}"


def run(
    program: str,
    lang: str = "python",
    timeout: float = 3.0,
    mem_mb: int = 1024,
    *,
    limits: Limits | None = None,
    isolation: str | None = None,
) -> ExecResult:
    """Run ``program`` (Python or Bash source) in a fresh sandboxed subprocess.

    ``limits`` overrides every limit (then ``timeout``/``mem_mb`` are ignored). ``isolation`` names a
    level (or label) from ``available_levels()``, an explicit opt-in when it is weaker than required;
    None means the required level, and ``IsolationError`` when it is not available (see ``require``).
    """
    limits = limits or Limits(timeout=timeout, mem_mb=mem_mb)
    with prepared(program, lang, limits, isolation) as (cmd, env, cwd, label):
        return _execute(cmd, env, cwd, limits, label)


@contextlib.contextmanager
def prepared(
    program: str, lang: str, limits: Limits, isolation: str | None = None
) -> Iterator[tuple[list[str], dict[str, str], str | None, str]]:
    """The confined command of one program: yields ``(argv, env, cwd, isolation label)``.

    The caller starts it (with ``start_new_session=True``) and must have it exited or killed before
    the block ends; on exit every process of the run is killed and its files removed. ``run`` is the
    batch use; the judge (``nl2code.eval.judge``) talks to a program through its stdin/stdout.
    ``isolation`` as for ``run``: None fails closed (``IsolationError``) below the required level.
    """
    if lang not in _SUFFIX:
        raise ValueError(f"unsupported language {lang!r}; expected one of {sorted(_SUFFIX)}")
    label = require(isolation)
    level, drop = label.partition("+")[0], label.endswith("+uid")
    uid = _take_uid() if drop else None
    token = None if drop else uuid.uuid4().hex
    prog_dir = tempfile.mkdtemp(prefix="nl2code-sbx-")
    try:
        yield _command(prog_dir, program, lang, limits, level, uid, token)
    finally:
        _kill_leftovers(uid, token)
        shutil.rmtree(prog_dir, ignore_errors=True)
        if uid is not None:
            _give_uid(uid)


def _command(
    prog_dir: str, program: str, lang: str, limits: Limits, level: str, uid: int | None, token: str | None
) -> tuple[list[str], dict[str, str], str | None, str]:
    name = _SUFFIX[lang]
    Path(prog_dir, name).write_text(program, encoding="utf-8")
    os.chmod(Path(prog_dir, name), 0o644)
    os.chmod(prog_dir, 0o755)
    if level == "bwrap":
        where, cwd = "/sandbox", None
    else:
        where, cwd = prog_dir, prog_dir
        if uid is not None:
            os.chown(prog_dir, uid, uid)  # the program's cwd: writable by it, by nobody else
    interp = [sys.executable, "-I", "-B"] if lang == "python" else ["/bin/bash", "--noprofile", "--norc"]
    cmd = [*interp, f"{where}/{name}"]
    cmd = _limit_argv(limits) + cmd
    if uid is not None:
        cmd = _setpriv_argv(uid) + cmd
    env = dict(_ENV)
    if level == "bwrap":
        cmd = _bwrap_argv(prog_dir, limits, keep_caps=uid is not None) + cmd
    else:
        if level == "unshare-net":
            cmd = _unshare_argv(f"{prog_dir}/.reach" if uid is not None else None) + cmd
        env["TMPDIR"] = env["HOME"] = prog_dir
    if token:
        env["NL2CODE_SANDBOX_RUN"] = token  # lets cleanup find our processes when uids are shared
    return cmd, env, cwd, level + ("+uid" if uid is not None else "")


def _execute(cmd: list[str], env: dict[str, str], cwd: str | None, limits: Limits, isolation: str) -> ExecResult:
    start = time.monotonic()
    try:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=cwd,
            env=env,
            start_new_session=True,
            close_fds=True,
            preexec_fn=None if shutil.which("prlimit") else functools.partial(_set_rlimits, limits),
        )
    except OSError as e:
        return ExecResult("sandbox_error", "", "", 0.0, f"could not start: {e}", isolation)
    out_fd, err_fd = proc.stdout.fileno(), proc.stderr.fileno()
    bufs = {out_fd: bytearray(), err_fd: bytearray()}
    deadline = start + limits.timeout
    timed_out = overflow = False
    exited_at: float | None = None
    sel = selectors.DefaultSelector()
    sel.register(out_fd, selectors.EVENT_READ)
    sel.register(err_fd, selectors.EVENT_READ)
    try:
        while not overflow:
            now = time.monotonic()
            if exited_at is None and _exited(proc.pid):
                exited_at = now
            if now >= deadline:
                timed_out = exited_at is None
                break
            if not sel.get_map():  # both streams at EOF: wait for the exit status
                if exited_at is not None:
                    break
                time.sleep(0.005)
                continue
            # Pipes still open 0.2 s after the program exited are held by escaped children: stop.
            if exited_at is not None and now - exited_at > 0.2:
                break
            for key, _ in sel.select(timeout=min(deadline - now, 0.05)):
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    sel.unregister(key.fd)
                    continue
                buf = bufs[key.fd]
                buf += chunk[: limits.output_bytes + 1 - len(buf)]
                overflow = overflow or len(buf) > limits.output_bytes
    finally:
        sel.close()
        # Kill the whole group (bwrap, its reaper, the program) while the leader is still unreaped,
        # so its pid cannot have been reused by an unrelated process group.
        with contextlib.suppress(OSError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    seconds = time.monotonic() - start
    stdout = bytes(bufs[out_fd][: limits.output_bytes]).decode("utf-8", "replace")
    stderr = bytes(bufs[err_fd][: limits.output_bytes]).decode("utf-8", "replace")
    status, reason = _classify(proc.returncode, stderr, timed_out, overflow, limits)
    return ExecResult(status, stdout, stderr, seconds, reason, isolation, proc.returncode)


def _exited(pid: int) -> bool:
    """Whether the child has exited, without reaping it (WNOWAIT)."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def run_many(
    jobs: Sequence[Job],
    workers: int | None = None,
    progress: bool | str = False,
    on_result: Callable[[int, ExecResult], None] | None = None,
    isolation: str | None = None,
) -> list[ExecResult]:
    """Run ``jobs`` on ``workers`` threads (each drives one subprocess at a time); results in job order.

    ``isolation`` as for ``run``; it is checked before anything runs (``IsolationError``).
    """
    label = require(isolation)
    return map_threads(
        lambda job: run(job.program, job.lang, limits=job.limits, isolation=label),
        jobs, workers, progress if not isinstance(progress, bool) else progress and "executing", on_result,
    )  # fmt: skip


def map_threads(
    fn: Callable[[T], R],
    items: Sequence[T],
    workers: int | None = None,
    progress: str | bool = False,
    on_result: Callable[[int, R], None] | None = None,
) -> list[R]:
    """``fn`` over ``items`` on ``workers`` threads, results in item order, with a progress bar named
    ``progress`` (each item drives subprocesses, so threads are enough)."""
    workers = max(1, workers or os.cpu_count() or 1)
    results: list[R | None] = [None] * len(items)
    bar = None
    if progress and items:
        from tqdm import tqdm

        bar = tqdm(total=len(items), desc=str(progress), unit="prog", file=sys.stderr)

    def one(i: int) -> None:
        results[i] = fn(items[i])
        if on_result:
            on_result(i, results[i])
        if bar is not None:
            bar.update(1)

    try:
        if workers == 1:
            for i in range(len(items)):
                one(i)
        else:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                list(pool.map(one, range(len(items))))
    finally:
        if bar is not None:
            bar.close()
    return results  # type: ignore[return-value]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m nl2code.eval.sandbox [-v]``: one line saying which isolation generated code gets
    here, or why it is refused (exit 1, with every level's state); ``-v`` lists the levels anyway."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        print(f"nl2code sandbox: ok, generated code runs under isolation {require()}")
        code = 0
    except IsolationError as e:
        print(f"nl2code sandbox: {e}")
        code = 1
    if code or "-v" in argv:
        for level, p in _probes().items():
            print(f"  {level:<12} {p.label or 'not offered'}{': ' + p.why if p.why else ''}")
    return code


if __name__ == "__main__":
    sys.exit(main())
