"""Ordinary behaviour of the sandbox: capture, statuses, limits, isolation record, parallel runs."""

from __future__ import annotations

import ast
import os
import time
from pathlib import Path

import pytest
from exec_fixtures import leftover_processes

from nl2code.eval import sandbox
from nl2code.eval.sandbox import Job, Limits

QUICK = Limits(timeout=5.0)
# Runs without a named level need the required one (bubblewrap); without it they are refused.
default_level = pytest.mark.skipif(bool(sandbox.isolation_problem()), reason=sandbox.isolation_problem() or "-")


@default_level
def test_captures_stdout_and_records_isolation():
    r = sandbox.run("print('hello')\nprint(6 * 7)", limits=QUICK)
    assert r.ok and r.status == "ok" and r.returncode == 0
    assert r.stdout == "hello\n42\n"
    assert r.isolation == sandbox.best_isolation() == sandbox.required_isolation()


@default_level
def test_exception_is_an_error_with_the_exception_line_as_reason():
    r = sandbox.run("def f():\n    raise KeyError('boom')\nf()", limits=QUICK)
    assert r.status == "error" and not r.ok
    assert r.reason == "KeyError: 'boom'"
    assert "Traceback" in r.stderr


@default_level
def test_nonzero_exit_without_message():
    r = sandbox.run("import sys\nsys.exit(3)", limits=QUICK)
    assert (r.status, r.reason, r.returncode) == ("error", "exit status 3", 3)


@default_level
def test_bash_programs_run():
    r = sandbox.run("x=$((6 * 7)); echo \"v=$x\"; printf 'a b\\n' | awk '{print $2}'", "bash", limits=QUICK)
    assert r.ok, r.stderr
    assert r.stdout == "v=42\nb\n"


@default_level
def test_numpy_and_pandas_import_inside():
    prog = "import numpy as np, pandas as pd\nprint(int(np.arange(5).sum()), pd.Series([1, 2]).sum())"
    r = sandbox.run(prog, limits=Limits(timeout=20.0, mem_mb=2048))
    assert r.ok, r.stderr
    assert r.stdout.split() == ["10", "3"]


@default_level
def test_environment_is_not_inherited(monkeypatch):
    monkeypatch.setenv("NL2CODE_TEST_SECRET", "s3cret")
    r = sandbox.run("import os\nprint(os.environ.get('NL2CODE_TEST_SECRET'))", limits=QUICK)
    assert r.stdout == "None\n"


@default_level
def test_program_may_write_its_private_tmp():
    prog = "import tempfile\nwith tempfile.NamedTemporaryFile('w+') as f:\n    f.write('x'); f.seek(0); print(f.read())"
    r = sandbox.run(prog, limits=QUICK)
    assert r.ok and r.stdout == "x\n", r.stderr


@default_level
def test_file_size_limit():
    prog = "import tempfile\nwith open(tempfile.mktemp(), 'wb') as f:\n    f.write(b'0' * (4 << 20))"
    r = sandbox.run(prog, limits=Limits(timeout=5.0, fsize_mb=1))
    assert not r.ok  # SIGXFSZ is ignored by Python, so the write raises EFBIG


@default_level
def test_output_cap_is_exact():
    r = sandbox.run("print('y' * 5000)", limits=Limits(timeout=5.0, output_bytes=1000))
    assert r.status == "output_limit"
    assert len(r.stdout) == 1000


@default_level
def test_timeout_is_wall_clock_and_kills():
    start = time.monotonic()
    r = sandbox.run("import time\ntime.sleep(60)", limits=Limits(timeout=1.0))
    assert r.status == "timeout" and "timeout" in r.reason
    assert time.monotonic() - start < 5
    assert not leftover_processes()


@default_level
def test_memory_limit():
    r = sandbox.run("x = bytearray(3 << 30)", limits=Limits(timeout=5.0, mem_mb=512))
    assert r.status == "memory"


def test_unknown_language_and_unavailable_level_are_rejected():
    with pytest.raises(ValueError, match="unsupported language"):
        sandbox.run("x", "ruby")
    with pytest.raises(sandbox.SandboxError):
        sandbox.run("pass", isolation="no-such-level")


@default_level
def test_run_many_keeps_job_order_in_parallel():
    jobs = [Job(f"import time\ntime.sleep({0.2 if i % 2 else 0})\nprint({i})", limits=QUICK) for i in range(6)]
    results = sandbox.run_many(jobs, workers=3)
    assert [r.stdout.strip() for r in results] == [str(i) for i in range(6)]


@pytest.mark.parametrize("level", sandbox.available_levels())
def test_every_available_level_runs_and_is_recorded(level):
    caps = "[ln.split()[1] for ln in open('/proc/self/status') if ln.startswith('CapEff')][0]"
    r = sandbox.run(f"import os\nprint(1 + 1, os.getuid(), {caps})", limits=QUICK, isolation=level)
    assert r.ok, r.stderr
    total, uid, cap_eff = r.stdout.split()
    assert total == "2" and r.isolation == sandbox.require(level) and r.isolation.split("+")[0] == level
    assert int(cap_eff, 16) == 0  # no capabilities on any level
    uid = int(uid)
    if os.geteuid() == 0 and level != "bwrap":
        assert r.isolation.endswith("+uid") and uid != 0  # outside bwrap, root is never kept


@pytest.mark.skipif(os.geteuid() != 0, reason="the interpreter reach only matters for root's uid drop")
def test_unshare_net_reaches_an_interpreter_under_a_closed_directory():
    if "unshare-net" not in sandbox.available_levels():
        pytest.skip(f"unshare-net is not offered here: {sandbox._probes()['unshare-net'].why}")
    closed = {top for root in sandbox._python_roots() if (top := sandbox._closed_ancestor(root))}
    prog = f"import os, sys\nprint(os.getuid())\nfor p in {sorted(closed)!r}:\n    print(p, sorted(os.listdir(p)))"
    r = sandbox.run(prog, limits=QUICK, isolation="unshare-net")
    assert r.ok, r.stderr
    uid, *listings = r.stdout.splitlines()
    assert int(uid) != 0
    for line in listings:  # a closed directory shows only the path to the interpreter, nothing of its own
        top, _, names = line.partition(" ")
        needed = {
            Path(root).relative_to(top).parts[0] for root in sandbox._python_roots() if root.startswith(top + "/")
        }
        assert set(ast.literal_eval(names)) == needed, line


@pytest.mark.skipif(os.geteuid() != 0, reason="uid drop only applies when the harness runs as root")
def test_program_does_not_run_as_root_under_bwrap():
    if "bwrap" not in sandbox.available_levels():
        pytest.skip("bubblewrap not installed")
    r = sandbox.run("import os\nprint(os.getuid(), os.geteuid())", limits=QUICK, isolation="bwrap")
    uid, euid = map(int, r.stdout.split())
    assert uid != 0 and euid != 0


@default_level
def test_limits_still_apply_without_prlimit(monkeypatch):
    which = sandbox.shutil.which
    monkeypatch.setattr(sandbox.shutil, "which", lambda name: None if name == "prlimit" else which(name))
    assert sandbox._limit_argv(QUICK) == []
    r = sandbox.run("x = bytearray(3 << 30)", limits=Limits(timeout=5.0, mem_mb=512))
    assert r.status == "memory"
    assert sandbox.run("print('ok')", limits=QUICK).stdout == "ok\n"
