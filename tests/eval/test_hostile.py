"""Hostile programs: each must end as a recorded failure with a reason, leave nothing running, touch
nothing outside the sandbox, and not stop the next sample from being evaluated.

Part 1 runs them as HumanEval completions through the task (the path real samples take), at the
strongest isolation available. Part 2 runs a subset directly on every available isolation level.
A program that would harm the host at a weak level (e.g. ``kill -9 -1`` when nothing separates it
from the harness) is skipped there, and the skip says why.
"""

from __future__ import annotations

import ast
import os
import socket
import uuid
from pathlib import Path

import pytest
from exec_fixtures import add_one_problem, leftover_processes, private_cache  # noqa: F401

from nl2code.eval import sandbox
from nl2code.eval.sandbox import Limits
from nl2code.eval.tasks import EvalContext
from nl2code.eval.tasks.humaneval import HumanEvalTask

REPO = Path(__file__).resolve().parents[2]
GOOD = "    return x + 1\n"
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
        "ok",  # exits 0 before the tests: a failure only because the sentinel is missing
    ),
    "subclasses_escape": (
        "    system = None\n    for cls in ().__class__.__base__.__subclasses__():\n"
        "        if cls.__name__ == '_wrap_close':\n            system = cls.__init__.__globals__['system']\n"
        "    assert system is not None\n    assert system('echo pwned > {victim}') == 0\n    return x + 1\n",
        {"uid"},
        "error",
    ),
    "closed_stdout": ("    import os\n    os.close(1)\n    return x + 1\n", set(), None),
    "read_stdin": ("    return int(input()) + 1\n", set(), "error"),
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
    yield {"listener": listener, "port": listener.getsockname()[1], "victim": victim}
    listener.close()


def assert_host_unharmed(host, marker: str) -> None:
    with pytest.raises(BlockingIOError):
        host["listener"].accept()  # no connection ever arrived
    assert host["victim"].read_text() == "original"
    assert not leftover_processes(marker)


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_completion_is_a_recorded_failure(name, host, add_one_problem):  # noqa: F811
    template, needs, status = HOSTILE[name]
    level = sandbox.available_levels()[0]
    missing = needs - traits(level)
    if missing:
        pytest.skip(f"{name} is not safe to run at isolation {level!r} (lacks {sorted(missing)})")
    marker = f"nl2code-hostile-{uuid.uuid4().hex}"
    completion = template.format(
        port=host["port"], victim=str(host["victim"]), project=str(REPO / "pyproject.toml"), marker=marker
    )
    res = HumanEvalTask().judge(add_one_problem, {"Toy/0": [completion, GOOD]}, CTX)
    evil, good = res.results
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
