"""Regenerate the committed gRPC stubs in ``sidecar/demo/_pb`` from ``oracle.proto``.

Run ``python -m sidecar.demo.regen`` after changing the .proto (needs grpcio-tools, a test
dependency). The stubs are committed so that a plain install needs no compiler; the generated
code checks at import that the installed grpcio and protobuf are at least the versions that
generated it, and this script writes those versions into a header of each file.

protoc writes ``import oracle_pb2`` in ``oracle_pb2_grpc.py`` as if ``_pb`` were on ``sys.path``;
this script rewrites it to a package import.
"""

from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path

PB_DIR = Path(__file__).resolve().parent / "_pb"
PROTO = "oracle.proto"
_BARE_IMPORT = "import oracle_pb2 as oracle__pb2"
_PACKAGE_IMPORT = "from sidecar.demo._pb import oracle_pb2 as oracle__pb2"


def main() -> int:
    """Run protoc through grpc_tools, fix the import, stamp the versions; returns an exit code."""
    try:
        from grpc_tools import protoc
    except ImportError:
        print("regen: grpcio-tools is not installed (pip install -e '.[test]')", file=sys.stderr)
        return 1
    include = str(Path(protoc.__file__).resolve().parent / "_proto")
    code = protoc.main([
        "grpc_tools.protoc",
        f"-I{PB_DIR}",
        f"-I{include}",
        f"--python_out={PB_DIR}",
        f"--grpc_python_out={PB_DIR}",
        str(PB_DIR / PROTO),
    ])
    if code != 0:
        print(f"regen: protoc failed with code {code}", file=sys.stderr)
        return 1
    versions = ", ".join(
        f"{name} {metadata.version(name)}" for name in ("grpcio-tools", "grpcio", "protobuf")
    )
    needs = _runtime_needs(
        (PB_DIR / "oracle_pb2.py").read_text(), (PB_DIR / "oracle_pb2_grpc.py").read_text()
    )
    header = (
        f"# Generated from {PROTO} by `python -m sidecar.demo.regen` with {versions}.\n"
        f"# Needs at run time: {needs}. Committed on purpose; regenerate instead of editing.\n"
    )
    for name in ("oracle_pb2.py", "oracle_pb2_grpc.py"):
        path = PB_DIR / name
        text = path.read_text()
        if name == "oracle_pb2_grpc.py":
            if _BARE_IMPORT not in text:
                print(f"regen: expected {_BARE_IMPORT!r} in {name}", file=sys.stderr)
                return 1
            text = text.replace(_BARE_IMPORT, _PACKAGE_IMPORT)
        path.write_text(header + text)
    print(f"regen: wrote {PB_DIR} ({versions}); the stubs need {needs}")
    return 0


def _runtime_needs(pb2: str, pb2_grpc: str) -> str:
    """The minimum grpcio and protobuf versions that the generated code checks for at import."""
    grpc_min = re.search(r"GRPC_GENERATED_VERSION = '([^']+)'", pb2_grpc)
    proto_min = re.search(r"Protobuf Python Version: (\d+)\.(\d+)\.(\d+)", pb2)
    if not grpc_min or not proto_min:
        return "(versions not found in the generated code)"
    major = int(proto_min.group(1))
    return f"grpcio>={grpc_min.group(1)}, protobuf>={'.'.join(proto_min.groups())},<{major + 1}"


if __name__ == "__main__":
    sys.exit(main())
