"""Writes docs/configuration.md from the commands' own flag declarations (sidecar/options.py).

    .venv/bin/python scripts/config_doc.py          # rewrite the file
    .venv/bin/python scripts/config_doc.py --check  # exit 1 if the file is out of date

The tables cannot drift from the code: tests/test_docs.py runs the check.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from sidecar.cli import COMMANDS, _parser_for

DOC = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"

HEAD = """# Configuration

Every flag has an environment-variable twin: a flag wins over its variable, a variable over the
default. A bad value stops the command before it starts, with a message that names the flag or
the variable and says what is expected (exit code 2). Lists given through a variable are
comma-separated. Durations take a unit (`30s`, `5m`, `1h30m`, `250ms`, `2d`) or a bare number
of seconds.

This file is generated from the code by `scripts/config_doc.py`; edit the flags' help there.
"""

# Everything from this line on is written by hand and kept as it is by the generator.
KEEP = "<!-- written by hand below; scripts/config_doc.py keeps it as it is -->"


def _default(action: argparse.Action) -> str:
    value = getattr(action, "declared_default", action.default)
    if value in (None, "", [], False):
        return ""
    return f"`{value}`"


def render() -> str:
    parts = [HEAD]
    for name, (_, help_text) in COMMANDS.items():
        parser = _parser_for([name])
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        command = sub.choices[name]
        parts.append(f"\n## `oracle-sidecar {name}`\n\n{help_text[0].upper()}{help_text[1:]}.\n")
        parts.append("\n| flag | environment | default | meaning |\n| --- | --- | --- | --- |\n")
        for action in command._actions:
            if not action.option_strings or action.dest == "help":
                continue
            env = getattr(action, "env", None)
            text = getattr(action, "text", action.help or "").replace("|", "\\|")
            flag = ", ".join(f"`{o}`" for o in action.option_strings)
            parts.append(f"| {flag} | {f'`{env}`' if env else ''} | {_default(action)} | "
                         f"{text} |\n")
    kept = DOC.read_text().partition(KEEP) if DOC.exists() else ("", "", "")
    if kept[1]:
        parts.append(f"\n{KEEP}{kept[2]}")
    return "".join(parts)


def main() -> int:
    for key in [k for k in os.environ if k.startswith(("ORACLE_", "ALERT_", "DASHBOARD_",
                                                        "NPS_", "LOAD_", "DEMO_"))]:
        del os.environ[key]  # the doc shows the declared defaults, not this shell's
    text = render()
    if "--check" in sys.argv:
        if DOC.read_text() != text:
            print(f"{DOC} is out of date: run python scripts/config_doc.py", file=sys.stderr)
            return 1
        return 0
    DOC.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
