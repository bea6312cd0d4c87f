"""Which optional extra each command needs, and the one line that says so when it is missing.

``pip install oracle-sidecar`` is the reporter alone (standard library only). The commands need
more: ``serve``, ``dashboard`` and ``alert`` the ``sidecar`` extra, the demo's commands the
``demo`` extra (its committed gRPC stubs pin grpcio and protobuf). The requirements are read from
the installed distribution's metadata, so pyproject.toml stays the one place that lists them.
"""

from __future__ import annotations

import re
from importlib import metadata

__all__ = ["EXTRA_OF", "missing_extra", "unmet"]

DIST = "oracle-sidecar"

# command -> the extra that brings what it imports
EXTRA_OF: dict[str, str] = {
    "serve": "sidecar",
    "dashboard": "sidecar",
    "alert": "sidecar",
    "demo": "demo",
    "demo-oracle": "demo",
    "load": "demo",
}

_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9_.-]+)\s*(?:\[([^\]]*)\])?\s*([^;]*?)\s*(?:;(.*))?$")
_EXTRA_MARKER = re.compile(r"""extra\s*==\s*["']([^"']+)["']""")


def _version(text: str) -> tuple[int, ...]:
    match = re.match(r"\d+(?:\.\d+)*", text.strip())
    return tuple(int(p) for p in match[0].split(".")) if match else ()


def _satisfies(have: str, op: str, want: str) -> bool:
    a, b = _version(have), _version(want)
    width = max(len(a), len(b))
    a, b = a + (0,) * (width - len(a)), b + (0,) * (width - len(b))
    return {">=": a >= b, ">": a > b, "<=": a <= b, "<": a < b, "==": a == b,
            "!=": a != b, "~=": a >= b}.get(op, True)


def unmet(extra: str, _seen: frozenset[str] = frozenset()) -> str | None:
    """What of ``extra``'s requirements is missing or too old, in words; None when all are met.

    None as well when the project's metadata is not installed (a bare source checkout): the
    import then tells.
    """
    try:
        requirements = metadata.requires(DIST) or []
    except metadata.PackageNotFoundError:
        return None
    for line in requirements:
        match = _REQUIREMENT.match(line)
        if match is None:
            continue
        name, extras, specs, marker = match.groups()
        wanted = _EXTRA_MARKER.search(marker or "")
        if wanted is None or wanted[1] != extra:
            continue
        if name.lower().replace("_", "-") == DIST:
            for inner in (extras or "").split(","):
                inner = inner.strip()
                if inner and inner not in _seen:
                    found = unmet(inner, _seen | {extra})
                    if found:
                        return found
            continue
        try:
            have = metadata.version(name)
        except metadata.PackageNotFoundError:
            return f"{name} is not installed"
        for spec in filter(None, (s.strip() for s in specs.split(","))):
            op = re.match(r"[<>=!~]+", spec)
            if op and not _satisfies(have, op[0], spec[len(op[0]):]):
                return f"{name} {have} is installed, {name}{spec} is needed"
    return None


def missing_extra(command: str, err: BaseException | None = None) -> str | None:
    """The line to print when ``command`` cannot run for want of its extra, else None.

    Without ``err``: asks the installed metadata before the command is imported. With ``err``
    (its import failed): None unless the error is about a missing third-party package, so that
    a bug of ours surfaces as it is.
    """
    extra = EXTRA_OF.get(command)
    if extra is None:
        return None
    if err is None:
        what = unmet(extra)
        if what is None:
            return None
    elif isinstance(err, ModuleNotFoundError):
        if (err.name or "sidecar").split(".")[0] == "sidecar":
            return None
        what = f"{err.name} is not installed"
    elif isinstance(err, ImportError):
        what = f"ImportError: {str(err).splitlines()[0][:160]}"
    else:
        return None
    return (f"oracle-sidecar {command} needs the '{extra}' extra ({what}): "
            f"pip install 'oracle-sidecar[{extra}]'")
