"""What the benchmarks ran on, and what a process costs: CPU seconds and RSS from /proc."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from importlib import metadata
from typing import Any

__all__ = ["LIBRARIES", "cpu_seconds", "describe", "machine_line", "memory_mib"]

# Distributions whose versions change the figures.
LIBRARIES = ("grpcio", "prometheus-client", "py-grpc-prometheus", "opentelemetry-sdk",
             "datadog", "statsd", "aiohttp")
_TICKS = os.sysconf("SC_CLK_TCK")


def _cpuinfo() -> dict[str, str]:
    info: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key and key not in info:
                    info[key] = value.strip()
    except OSError:
        pass
    return info


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def _revision() -> str:
    """The commit measured, and whether the package differed from it (others edit too)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, timeout=10,
                              capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "sidecar"], cwd=root,
                               timeout=10, capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown revision"
    return f"commit {head}" + (" with uncommitted changes in sidecar/" if dirty else "")


def describe() -> dict[str, Any]:
    """CPU model, cores, kernel, Python, library versions, load: what a table must name."""
    cpu = _cpuinfo()
    model = cpu.get("model name") or platform.processor() or "unknown CPU"
    if "cpu family" in cpu and "model" in cpu:
        model += f" (family {cpu['cpu family']}, model {cpu['model']})"
    if "hypervisor" in cpu.get("flags", "").split():
        model += ", virtual machine"
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return {
        "cpu": model,
        "cores": os.cpu_count() or 0,
        "usable_cores": len(os.sched_getaffinity(0)),
        "kernel": platform.release(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "versions": versions,
        "load": os.getloadavg(),
        "max_dgram_qlen": _read("/proc/sys/net/unix/max_dgram_qlen"),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "executable": sys.executable,
        "revision": _revision(),
    }


def machine_line(m: dict[str, Any]) -> str:
    """One Markdown paragraph naming the machine, for the head of every table."""
    libs = ", ".join(f"{k} {v}" for k, v in m["versions"].items())
    return (f"Machine: {m['cpu']}, {m['cores']} cores ({m['usable_cores']} usable), "
            f"Linux {m['kernel']}, {m['python']}; {libs}. "
            f"Load average as it started {m['load'][0]:.2f} / {m['load'][1]:.2f} / "
            f"{m['load'][2]:.2f} (1/5/15 min; other users' work included). "
            f"Code: {m['revision']}. Run {m['date']}.")


def cpu_seconds(pid: int) -> float:
    """CPU seconds the process's live threads have run so far, at nanosecond resolution.

    Summed from each thread's /proc schedstat (``stat`` only counts 10 ms ticks, too coarse
    for a receiver that works a few milliseconds a second); falls back to ``stat``.
    """
    total = 0
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    total += int(f.read().split()[0])
            except (OSError, ValueError, IndexError):
                continue
    except OSError:
        total = 0
    if total:
        return total / 1e9
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def memory_mib(pid: int) -> dict[str, float]:
    """VmRSS (now) and VmHWM (peak) of a process, in MiB."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) / 1024
    return out
