"""The benchmarks run and print their tables; their figures are never asserted (no timed tests)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_isolated_benchmark_quick_prints_its_ratio_table(tmp_path: Path) -> None:
    """The quick isolated benchmark prints a ratio row per alternative and writes its section."""
    out = tmp_path / "benchmarks.md"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--only", "isolated", "--output",
         str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert "× reporter, median (min–max)" in text
    for row in ("floor: plain dict", "**reporter** (interceptor path)",
                "prometheus-client, cached children", "prometheus-client, `labels()` per call",
                "py-grpc-prometheus `PromServerInterceptor`", "OpenTelemetry SDK histogram",
                "one Unix datagram per RPC", "datadog DogStatsD, Unix socket",
                "statsd over UDP 127.0.0.1"):
        line = next((ln for ln in text.splitlines() if ln.startswith(f"| {row} ")), None)
        assert line is not None, f"no row for {row!r} in:\n{text}"
        assert "×" in line or "reference" in line
    assert "Machine: " in text and "Command: `" in text
    doc = out.read_text()
    assert "<!-- BEGIN bench:isolated -->" in doc and "<!-- END bench:isolated -->" in doc
    assert "× reporter" in doc


def test_ingest_benchmark_quick_compares_before_and_after(tmp_path: Path) -> None:
    """The quick ingest benchmark prints CPU per snapshot for both codes, per row for three
    streams, and parts per push."""
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--only", "ingest", "--no-write"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    text = done.stdout
    for row in ("| before (`", "| after (this tree)", "| paced (docs/protocol.md)",
                "| pacing off (a part given up at once)", "| 8 methods, benchmark stream",
                "| 8 methods as the reporter sends them, fine counts",
                "| one part of a 2 000-method snapshot"):
        assert row in text, f"no row {row!r} in:\n{text}"
    paced = next(ln for ln in text.splitlines() if ln.startswith("| paced"))
    assert "| yes " in paced  # every part of every push arrived


def test_unknown_benchmark_name_is_refused() -> None:
    """Asking for a benchmark that does not exist names the ones that do, and exits 2."""
    done = subprocess.run([sys.executable, "-m", "benchmarks", "--only", "nope", "--no-write"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "isolated" in done.stderr and "nope" in done.stderr


def test_state_file_benchmark_quick_prints_its_table(tmp_path: Path) -> None:
    """The quick state-file benchmark prints save and load rows for 1, 8 and 64 processes."""
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--only", "state", "--no-write"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    for processes in ("1", "8", "64"):
        assert any(line.startswith("|") and line.split("|")[1].strip() == processes
                   for line in done.stdout.splitlines()), done.stdout
    assert "periodic saves use under 1 % of one core" in done.stdout


def test_history_gc_benchmark_quick_compares_packed_points_with_objects() -> None:
    """The quick history benchmark times full collections with both ways of keeping points."""
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--only", "history_gc", "--no-write"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    rows = {line.split("|")[1].strip(): line.split("|")[2].strip()
            for line in done.stdout.splitlines() if line.startswith("| ") and "kept as" not in line}
    tracked = {name: int(n.replace(",", "")) for name, n in rows.items() if n[:1].isdigit()}
    assert tracked["packed tuples (Totals.pack, now)"] * 10 < tracked["Totals objects (before)"]
