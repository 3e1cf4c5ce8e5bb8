"""The command line's common surface: --help, --version, ``python -m diffbio_prob`` and the console script,
exit codes (0 for help/version, 2 for usage errors) and where the text goes (stdout vs stderr)."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

SUBCOMMANDS = ("demo", "hmm", "de", "quant", "tximport")
NO_X64 = ("de", "tximport")  # always float64 (R's numbers) / no JAX at all


def _run(*args: str, script: bool = False) -> subprocess.CompletedProcess:
    cmd = (
        [str(Path(sys.executable).parent / "diffbio-prob")]
        if script
        else [sys.executable, "-m", "diffbio_prob"]
    )
    env = os.environ | {"COLUMNS": "100", "JAX_PLATFORMS": "cpu"}
    return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=120, env=env)


def _registered() -> list[str]:
    from diffbio_prob.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return list(sub.choices)


def test_module_help_lists_subcommands():
    run = _run("--help")
    assert run.returncode == 0 and run.stderr == ""
    assert run.stdout.startswith("usage: diffbio-prob")
    for name in _registered():
        assert f"\n    {name} " in run.stdout
    assert "demo" in _registered()


def test_version_matches_installed_metadata():
    run = _run("--version")
    assert run.returncode == 0
    assert run.stdout.strip() == f"diffbio-prob {version('diffbio-prob')}"


@pytest.mark.skipif(
    not (Path(sys.executable).parent / "diffbio-prob").exists(),
    reason="console script not installed next to this interpreter",
)
def test_console_script_matches_module():
    for args in (("--help",), ("--version",)):
        script, module = _run(*args, script=True), _run(*args)
        assert (script.returncode, script.stdout) == (module.returncode, module.stdout)


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_subcommand_help_has_examples_and_common_options(name):
    if name not in _registered():
        pytest.skip(f"subcommand {name!r} not added yet")
    run = _run(name, "--help")
    assert run.returncode == 0 and run.stdout.startswith(f"usage: diffbio-prob {name}")
    assert "examples:" in run.stdout and f"diffbio-prob {name}" in run.stdout.split("examples:")[1]
    # de always computes in float64 (R's numbers) and tximport uses no JAX, so neither has --x64
    # every subcommand runs as one job over several processes (tests/test_cli_distributed.py)
    for option in ("--seed", "--quiet", "--coordinator HOST:PORT", "--num-processes N", "--process-id I") + (
            ("--x64",) if name not in NO_X64 else ()):
        assert option in run.stdout
    if name in NO_X64:
        assert "--x64" not in run.stdout.split("options:")[1]


def test_no_subcommand_prints_help_and_exits_2():
    run = _run()
    assert run.returncode == 2 and run.stdout.startswith("usage: diffbio-prob")


@pytest.mark.parametrize("args", [("--no-such-option",), ("no-such-command",)])
def test_usage_errors_exit_2_with_an_error_line(args):
    run = _run(*args)
    assert run.returncode == 2 and run.stdout == ""
    assert run.stderr.strip().splitlines()[-1].startswith("diffbio-prob: error:")
