"""The chart's README gets a real cluster running: the image pushed to a registry and the
chart told its name, rendered by the real Helm engine; a pointer to the reporter section."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import helm_python as helm
import yaml

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "charts" / "oracle" / "README.md"


def set_value(values: dict[str, Any], key: str, value: str) -> None:
    """``--set a.b=c`` / ``--set a[0]=c`` into nested values, as Helm reads them."""
    *parents, last = key.split(".")
    node = values
    for part in parents:
        node = node.setdefault(part, {})
    match = re.fullmatch(r"(\w+)\[(\d+)\]", last)
    if match:
        items = node.setdefault(match.group(1), [])
        items.insert(int(match.group(2)), value)
    else:
        node[last] = value


def registry_block() -> str:
    section = README.read_text().split("### On a real cluster", 1)[1].split("\n### ", 1)[0]
    (block,) = re.findall(r"```sh\n(.*?)```", section, flags=re.S)
    return block


def test_the_registry_steps_push_the_image_and_the_chart_pulls_it() -> None:
    """The documented build, push and helm install: every pod runs the pushed image, with the
    pull secret."""
    block = registry_block()
    registry = re.search(r"^REGISTRY=(\S+)", block, flags=re.M).group(1)  # type: ignore[union-attr]
    image = f"{registry}/oracle-sidecar:0.1.0"
    block = block.replace("$REGISTRY", registry)
    assert f"docker build --platform linux/amd64 -t {image} ." in block
    assert f"docker push {image}" in block
    (install,) = [line for line in block.splitlines() if line.startswith("helm install")]
    words = shlex.split(install)
    values: dict[str, Any] = {}
    for i, word in enumerate(words):
        if word == "--set":
            key, _, value = words[i + 1].partition("=")
            set_value(values, key, value)
    with helm.Chart.load(ROOT / "charts" / "oracle") as chart:
        text = chart.render(values, name="oracle", namespace="oracle", is_install=True)
    pods = []
    for path, body in text.items():
        for doc in yaml.safe_load_all(body) if path.endswith(".yaml") else ():
            if doc and doc.get("kind") in ("Deployment", "CronJob"):
                spec = doc["spec"]["template"]["spec"] if doc["kind"] == "Deployment" else \
                    doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
                pods.append(spec)
    assert len(pods) >= 3  # the Oracle, the dashboard, the alerter
    for spec in pods:
        images = {c["image"] for c in spec.get("initContainers", []) + spec["containers"]}
        assert images == {image}, images
        assert spec["imagePullSecrets"] == [{"name": "regcred"}]


def test_it_points_at_the_reporter_section() -> None:
    """Running your own Oracle starts at the top-level README's reporter section."""
    text = README.read_text()
    assert "(../../README.md#the-reporter-in-your-oracle)" in text
    assert "kind load docker-image" in text  # the local way stays
