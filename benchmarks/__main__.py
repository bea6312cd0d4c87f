"""``python -m benchmarks [--quick] [--only NAME ...] [--output PATH | --no-write]``."""

from __future__ import annotations

import argparse
import importlib
import os
import shlex
import sys
import time
import traceback

from benchmarks import BENCHMARKS
from benchmarks.machine import describe, machine_line
from benchmarks.procs import ROOT
from benchmarks.report import update_doc


def _command(argv: list[str]) -> str:
    exe = sys.executable
    if exe.startswith(str(ROOT) + os.sep):
        exe = os.path.relpath(exe, ROOT)
    return shlex.join([exe, "-m", "benchmarks", *argv])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true",
                        help="a short run for CI: few, brief rounds; figures are indicative")
    parser.add_argument("--only", action="append", default=[], metavar="NAME",
                        help=f"run only these (repeat or comma-separate): {', '.join(BENCHMARKS)}")
    parser.add_argument("--output", default=None,
                        help="Markdown file whose sections are rewritten (default: "
                             "docs/benchmarks.md for a full run; a quick run writes only where "
                             "this says)")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    chosen = [n.strip() for item in args.only for n in item.split(",") if n.strip()]
    unknown = [n for n in chosen if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}; choose from "
                     f"{', '.join(BENCHMARKS)}")
    names = [n for n in BENCHMARKS if not chosen or n in chosen]
    output = args.output
    if output is None and not args.quick:
        output = str(ROOT / "docs" / "benchmarks.md")
    if args.no_write:
        output = None
    command = _command(argv)
    failed = []
    started = time.monotonic()
    for name in names:
        t0 = time.monotonic()
        print(f"== {name}: running ({'quick' if args.quick else 'full'}) ...", file=sys.stderr,
              flush=True)
        machine = machine_line(describe())  # the load average as this benchmark starts
        try:
            section = importlib.import_module(BENCHMARKS[name]).run(args.quick, machine, command)
        except Exception:
            traceback.print_exc()
            failed.append(name)
            continue
        print(section.markdown(), flush=True)
        print(f"== {name}: {time.monotonic() - t0:.1f} s", file=sys.stderr, flush=True)
        if output is not None:
            update_doc(output, [section])
    print(f"== all: {time.monotonic() - started:.1f} s"
          + (f"; FAILED: {', '.join(failed)}" if failed else ""), file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
