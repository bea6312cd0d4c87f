"""Which extra a command needs, judged from the installed metadata, in one line."""

from __future__ import annotations

from importlib import metadata

import pytest

from sidecar import extras

REQUIRES = [
    'aiohttp>=3.10; extra == "sidecar"',
    'grpcio>=1.50; extra == "sidecar"',
    'oracle-sidecar[sidecar]; extra == "demo"',
    'grpcio>=1.85.1; extra == "demo"',
    'protobuf<8,>=7.35.1; extra == "demo"',
    'pytest>=8; extra == "test"',
]


@pytest.fixture
def installed(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The installed distributions and versions extras.unmet() sees; edit it in the test."""
    have = {"aiohttp": "3.14.5", "grpcio": "1.85.3", "protobuf": "7.36.2"}

    def version(name: str) -> str:
        if name not in have:
            raise metadata.PackageNotFoundError(name)
        return have[name]

    monkeypatch.setattr(metadata, "requires", lambda dist: REQUIRES)
    monkeypatch.setattr(metadata, "version", version)
    return have


def test_everything_installed_is_no_complaint(installed: dict[str, str]) -> None:
    """With every requirement met, no command has anything to say."""
    assert [extras.missing_extra(c) for c in extras.EXTRA_OF] == [None] * len(extras.EXTRA_OF)


def test_a_missing_package_names_the_extra(installed: dict[str, str]) -> None:
    """No aiohttp: serve names the sidecar extra, and demo (which includes it) the demo extra."""
    del installed["aiohttp"]
    assert extras.missing_extra("serve") == (
        "oracle-sidecar serve needs the 'sidecar' extra (aiohttp is not installed): "
        "pip install 'oracle-sidecar[sidecar]'")
    line = extras.missing_extra("demo-oracle")
    assert line is not None and "pip install 'oracle-sidecar[demo]'" in line


@pytest.mark.parametrize(("package", "old", "why"), [
    ("grpcio", "1.62.3", "grpcio 1.62.3 is installed, grpcio>=1.85.1 is needed"),
    ("protobuf", "4.25.9", "protobuf 4.25.9 is installed, protobuf>=7.35.1 is needed"),
    ("protobuf", "8.0.0", "protobuf 8.0.0 is installed, protobuf<8 is needed"),
])
def test_a_too_old_or_too_new_version_is_named(installed: dict[str, str], package: str,
                                               old: str, why: str) -> None:
    """The Oracle's own grpcio/protobuf pins keep the demo from running, and it says so."""
    installed[package] = old
    assert extras.missing_extra("serve") is None  # the sidecar is content with grpcio 1.50+
    assert extras.missing_extra("load") == (
        f"oracle-sidecar load needs the 'demo' extra ({why}): pip install 'oracle-sidecar[demo]'")


def test_an_import_error_of_ours_is_not_blamed_on_an_extra() -> None:
    """A missing module of this package is a bug to surface, not an install hint."""
    assert extras.missing_extra("serve", ModuleNotFoundError("x", name="sidecar.nope")) is None
    assert extras.missing_extra("serve", ModuleNotFoundError("x", name="aiohttp")) is not None
