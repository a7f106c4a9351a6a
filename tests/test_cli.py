from __future__ import annotations

import subprocess
import sys

import pytest

from nl2code import cli


def test_top_level_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for name in cli.COMMANDS:
        assert name in out


@pytest.mark.parametrize("name", cli.COMMANDS)
def test_every_subcommand_has_help(name, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main([name, "--help"])
    assert e.value.code == 0
    assert "usage: nl2code " + name in capsys.readouterr().out


def test_module_entry_point_runs():
    r = subprocess.run([sys.executable, "-m", "nl2code", "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "nl2code" in r.stdout


def test_unknown_command_fails():
    with pytest.raises(SystemExit) as e:
        cli.main(["no-such-command"])
    assert e.value.code != 0
