"""The docs stay true: generated tables match the code, and links point at real files."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_configuration_doc_matches_the_flags_in_the_code() -> None:
    """docs/configuration.md equals a fresh generation from every command's flags."""
    out = subprocess.run([sys.executable, "scripts/config_doc.py", "--check"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


def test_relative_links_in_markdown_point_at_existing_files() -> None:
    """Every relative link in README.md and docs/*.md names a file of the repository."""
    broken = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", doc.read_text()):
            if "://" in target or target.startswith("mailto:"):
                continue
            if not (doc.parent / target).exists():
                broken.append(f"{doc.relative_to(ROOT)} -> {target}")
    assert not broken, broken
