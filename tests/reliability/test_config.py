"""Bad configuration: every flag and env var of every command, given a bad value, stops the
command with exit code 2 and a message that names the flag or the variable.

The options are read from the commands' own parsers, so a flag added later is covered without
touching this file. Values that pass the parser but cannot work (a port taken, a socket path
that cannot be made) are run for real and must fail with exit 1 and a message saying why.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sidecar import cli

CANDIDATES = ("not-a-value", "-1", "0", "nan", "inf", "1e999", "99999999", "", " ", "-",
              "1.5.7", "http//no", "::", "LOUD", "maybe", "10s", "0x10")


def typed_options() -> list[tuple[str, str, str | None, Any]]:
    """(command, flag, env var, parser) of every option whose value is validated."""
    out = []
    for command in cli.COMMANDS:
        parser = cli._parser_for([command])
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        for action in sub.choices[command]._actions:
            if not action.option_strings or action.dest == "help":
                continue
            env = re.search(r"\[env ([A-Z0-9_]+)\]", action.help or "")
            parse = action.type if action.nargs != 0 else None
            if parse is None and action.nargs != 0:
                continue
            out.append((command, action.option_strings[0], env.group(1) if env else None,
                        parse))
    return out


def bad_value(parse: Any) -> str | None:
    """A value ``parse`` refuses, if there is one among the candidates."""
    for value in CANDIDATES:
        try:
            parse(value)
        except (ValueError, argparse.ArgumentTypeError):
            return value
    return None


ALL = typed_options()
# Free text (paths, hosts, names, selectors) has no bad value at parse time; the ones that can
# be wrong at run time are started below.
OPTIONS = [o for o in ALL if o[3] is None or bad_value(o[3]) is not None]


def test_every_command_has_options_with_env_twins(figures: Any) -> None:
    """The enumeration covers every command (a guard against it silently finding none)."""
    commands = {c for c, *_ in OPTIONS}
    assert commands == set(cli.COMMANDS)
    assert all(env for _, _, env, _ in ALL), [o for o in ALL if not o[2]]
    figures(commands=len(commands), options=len(ALL), validated=len(OPTIONS),
            cases=2 * len(OPTIONS) - sum(1 for o in OPTIONS if o[3] is None),
            free_text=sorted({f for _, f, _, p in ALL if p is not None and not bad_value(p)}))


@pytest.mark.parametrize(("command", "flag", "env", "parse"), OPTIONS,
                         ids=[f"{c} {f}" for c, f, _, _ in OPTIONS])
def test_a_bad_value_for_any_flag_or_env_var_exits_2_naming_it(
        command: str, flag: str, env: str, parse: Any, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The flag and its env twin, each with a value the option refuses."""
    for name in {e for _, _, e, _ in OPTIONS if e}:
        monkeypatch.delenv(name, raising=False)
    value: str | None = "maybe"  # a switch: only its env twin takes a value
    if parse is not None:
        value = bad_value(parse)
        assert value is not None
        with pytest.raises(SystemExit) as info:
            cli.main([command, flag, value])
        assert info.value.code == 2
        err = capsys.readouterr().err
        assert flag in err, err
    assert value is not None
    monkeypatch.setenv(env, value)
    with pytest.raises(SystemExit) as info:
        cli.main([command])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert env in err, err


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sidecar.cli", *args], capture_output=True,
                          text=True, timeout=60, env={**os.environ, **(env or {})},
                          stdin=subprocess.DEVNULL)


def test_values_that_parse_but_cannot_work_fail_at_start_with_exit_1_and_a_reason(
        tmp_path: Path, figures: Any) -> None:
    """A taken port, an address not on this machine, a socket path that cannot be made."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        sock = str(tmp_path / "m.sock")
        cases = {
            "serve: port taken": (run("serve", "--socket", sock, "--host", "127.0.0.1",
                                      "--port", port), "cannot listen"),
            "serve: foreign address": (run("serve", "--socket", sock, "--host", "192.0.2.1",
                                           "--port", "0"), "cannot listen"),
            "serve: socket directory impossible": (
                run("serve", "--socket", "/proc/1/nope/m.sock", "--host", "127.0.0.1",
                    "--port", "0"), "cannot create the socket directory"),
            "serve: socket path is a directory": (
                run("serve", "--socket", str(tmp_path), "--host", "127.0.0.1", "--port", "0"),
                "is not a socket"),
            "dashboard: port taken": (run("dashboard", "--host", "127.0.0.1", "--port", port,
                                          "--target", "http://127.0.0.1:1"), "cannot listen"),
        }
    for what, (out, reason) in cases.items():
        assert out.returncode == 1, (what, out.returncode, out.stdout, out.stderr)
        assert reason in out.stdout + out.stderr, (what, out.stdout, out.stderr)
    out = run("serve", "--drain-seconds", "-1")
    assert out.returncode == 2 and "--drain-seconds" in out.stdout + out.stderr
    figures(run_time_cases=len(cases) + 1, exit_codes="1 (cannot start), 2 (bad value)")
