"""The Kubernetes access module and target discovery, through the real client."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from sidecar.kube import Kube, KubeConflict, KubeForbidden
from sidecar.targets import Discovery, discover
from tests.fakes.kube_api import pod


def test_pods_are_listed_by_selector_with_ip_phase_and_readiness(fake_kube: Any) -> None:
    """Running and Pending pods, with and without IPs, filtered by the label selector."""
    fake_kube.pods = [
        pod("oracle-b", "10.0.0.2"),
        pod("oracle-a", "10.0.0.1", ready=False),
        pod("oracle-c", None, phase="Pending", ready=False),
        pod("other", "10.0.0.9", labels={"app": "other"}),
    ]
    pods = Kube(fake_kube.client()).list_pods("oracle", "app.kubernetes.io/component=oracle")
    assert [(p.name, p.ip, p.phase, p.ready) for p in pods] == [
        ("oracle-a", "10.0.0.1", "Running", False),
        ("oracle-b", "10.0.0.2", "Running", True),
        ("oracle-c", None, "Pending", False),
    ]


def test_missing_rbac_is_a_clear_forbidden_error(fake_kube: Any) -> None:
    """A 403 becomes KubeForbidden with the API's message and a hint about the Role."""
    fake_kube.forbid.add("pods")
    with pytest.raises(KubeForbidden, match="cannot list resource") as info:
        Kube(fake_kube.client()).list_pods("oracle", "x=y")
    assert info.value.status == 403 and "Role" in str(info.value)


def test_config_map_writes_use_optimistic_concurrency(fake_kube: Any) -> None:
    """Create, then replace at the right resourceVersion; a stale one is a KubeConflict."""
    kube = Kube(fake_kube.client())
    assert kube.read_config_map("oracle", "state") is None
    version = kube.create_config_map("oracle", "state", {"a": "1"})
    with pytest.raises(KubeConflict):
        kube.create_config_map("oracle", "state", {"a": "2"})
    data, read_version = kube.read_config_map("oracle", "state")  # type: ignore[misc]
    assert data == {"a": "1"} and read_version == version
    newer = kube.replace_config_map("oracle", "state", {"a": "3"}, version)
    with pytest.raises(KubeConflict, match="has been modified"):
        kube.replace_config_map("oracle", "state", {"a": "4"}, version)
    assert kube.read_config_map("oracle", "state") == ({"a": "3"}, newer)


def test_discovery_turns_pods_into_sidecar_urls(fake_kube: Any) -> None:
    """Pods with an IP get http://IP:port; a pod without one says why it cannot be asked."""
    fake_kube.pods = [pod("oracle-a", "10.0.0.1"), pod("oracle-c", None, phase="Pending")]
    how = Discovery(namespace="oracle", selector="app.kubernetes.io/component=oracle", port=9090)
    targets = asyncio.run(discover(how, Kube(fake_kube.client())))
    assert [(t.name, t.url) for t in targets] == [("oracle-a", "http://10.0.0.1:9090"),
                                                  ("oracle-c", None)]
    assert "Pending" in (targets[1].problem or "")
    fixed = asyncio.run(discover(Discovery(urls=("http://127.0.0.1:1",))))
    assert [t.url for t in fixed] == ["http://127.0.0.1:1"]
