"""The one entry point: ``oracle-sidecar serve | demo | demo-oracle | load | dashboard | alert``.

``oracle-sidecar`` alone, or with ``--help``, lists the commands in plain text.

Each role lives in its own module with two functions, ``configure(parser)`` and ``run(args)``.
They are imported only when their subcommand is chosen, so ``serve`` never loads the dashboard
or the Kubernetes client.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from types import ModuleType

from sidecar import __version__
from sidecar.extras import missing_extra

# subcommand -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("sidecar.server", "run the sidecar: receive pushes, serve :9090"),
    "demo": ("sidecar.demo.run", "run the whole system on this machine"),
    "demo-oracle": ("sidecar.demo.oracle", "run the demo Oracle gRPC server"),
    "load": ("sidecar.demo.load", "send gRPC traffic to an Oracle"),
    "dashboard": ("sidecar.dashboard.app", "serve the dashboard on :9000"),
    "alert": ("sidecar.alerter.run", "evaluate alert rules and notify Telegram"),
}

DESCRIPTION = ("Monitoring beside a Python gRPC service: the sidecar, its dashboard, the "
               "Telegram alerter, and a demo of the whole system.")
EPILOG = ("Run 'oracle-sidecar COMMAND --help' for a command's flags; every flag has an "
          "environment variable twin (docs/configuration.md). Start with 'oracle-sidecar demo'.")


def _parser_for(argv: list[str]) -> argparse.ArgumentParser:
    """Configure only the chosen subcommand, so a bad env var of another role is not an error."""
    chosen = next((a for a in argv if not a.startswith("-")), None)
    if chosen not in COMMANDS:
        parser = argparse.ArgumentParser(prog="oracle-sidecar", description=DESCRIPTION,
                                         epilog=EPILOG)
        parser.add_argument("--version", action="version", version=f"oracle-sidecar {__version__}")
        sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
        for name, (_, help_text) in COMMANDS.items():
            sub.add_parser(name, help=help_text)
        return parser
    parser = argparse.ArgumentParser(prog="oracle-sidecar")
    parser.add_argument("--version", action="version", version=f"oracle-sidecar {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    module, help_text = COMMANDS[chosen]
    command = sub.add_parser(chosen, help=help_text, description=help_text)
    command.set_defaults(_module=module)
    _role(chosen, module).configure(command)
    return parser


def _role(command: str, module: str) -> ModuleType:
    """Import a command's module; without its optional extra, one line and exit code 2."""
    line = missing_extra(command)
    if line is None:
        try:
            return importlib.import_module(module)
        except ImportError as err:
            line = missing_extra(command, err)
            if line is None:
                raise
    print(line, file=sys.stderr)
    raise SystemExit(2)


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen role; returns the process exit code."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv:  # a person trying the command: show what it can do
        _parser_for(argv).print_help()
        return 2
    args = _parser_for(argv).parse_args(argv)
    code: int = _role(args.command, args._module).run(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
