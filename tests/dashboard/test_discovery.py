"""The dashboard in a cluster: pods and the alert ConfigMap through the real Kubernetes client."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from sidecar.kube import Kube
from tests.conftest import free_port
from tests.dashboard.conftest import LivePod
from tests.dashboard.helpers import alert_state
from tests.fakes.kube_api import pod

SELECTOR = "app.kubernetes.io/component=oracle"


async def test_pods_found_through_the_api_are_fetched_by_ip_and_port(
        dashboard: Any, live_pod: LivePod, fake_kube: Any) -> None:
    """Running pods with an IP are asked at IP:port; a Pending one without an IP is named."""
    await live_pod.calls("GetReading", 5)
    fake_kube.pods = [
        pod("oracle-b", "127.0.0.2", ready=False),  # nothing listens there
        pod("oracle-a", "127.0.0.1"),
        pod("oracle-c", None, phase="Pending", ready=False),
        pod("grafana", "127.0.0.1", labels={"app": "grafana"}),
        pod("oracle-x", "127.0.0.1", namespace="elsewhere"),
    ]
    client = await dashboard(kube=Kube(fake_kube.client()), namespace="oracle",
                             selector=SELECTOR, sidecar_port=live_pod.port)
    doc = await (await client.get("/api/status")).json()
    assert doc["discovery"] == {"mode": "kubernetes", "namespace": "oracle",
                                "selector": SELECTOR, "error": None}
    pods = {p["name"]: p for p in doc["pods"]}
    assert list(pods) == ["oracle-a", "oracle-b", "oracle-c"]
    assert pods["oracle-a"]["reachable"] and pods["oracle-a"]["pod_ready"] is True
    assert pods["oracle-a"]["url"] == f"http://127.0.0.1:{live_pod.port}"
    assert pods["oracle-a"]["window"]["totals"]["count"] == 5
    assert pods["oracle-b"]["error"].startswith("unreachable")
    assert pods["oracle-c"]["url"] is None and pods["oracle-c"]["phase"] == "Pending"
    assert pods["oracle-c"]["error"] == "pod is Pending and has no IP yet"
    levels = {p["pod"]: p["level"] for p in doc["problems"]}
    assert levels == {"oracle-b": "error", "oracle-c": "warning"}
    history = await (await client.get("/api/history?pod=oracle-a")).json()
    assert history["pods"] == [{"name": "oracle-a", "error": None, "points": 0}]
    assert ("GET", "/api/v1/namespaces/oracle/pods") in fake_kube.requests


async def test_missing_rbac_is_a_banner_and_the_last_known_pods_stay(
        dashboard: Any, live_pod: LivePod, fake_kube: Any) -> None:
    """A 403 on listing pods: a banner naming the Role, HTTP 200; once pods were seen, they stay."""
    fake_kube.forbid.add("pods")
    client = await dashboard(kube=Kube(fake_kube.client()), namespace="oracle",
                             sidecar_port=live_pod.port, refresh=0.01)
    response = await client.get("/api/status")
    doc = await response.json()
    assert response.status == 200 and doc["pods"] == []
    error = doc["discovery"]["error"]
    assert "403" in error and "cannot list resource" in error and "Role" in error
    assert doc["problems"] == [{"level": "error", "pod": None,
                                "text": f"Cannot list the Oracle pods: {error}"}]
    assert (await client.get("/ready")).status == 200

    fake_kube.forbid.clear()
    fake_kube.pods = [pod("oracle-a", "127.0.0.1")]
    await asyncio.sleep(0.02)
    doc = await (await client.get("/api/status")).json()
    assert [p["name"] for p in doc["pods"]] == ["oracle-a"] and doc["problems"] == []

    fake_kube.forbid.add("pods")
    await asyncio.sleep(0.02)
    doc = await (await client.get("/api/status")).json()
    assert [p["name"] for p in doc["pods"]] == ["oracle-a"] and doc["pods"][0]["reachable"]
    assert "403" in doc["problems"][0]["text"]


async def test_an_unreachable_kubernetes_api_is_a_banner(dashboard: Any) -> None:
    """No API server at the configured address: a clear banner, never a stack trace."""
    from kubernetes import client as k8s

    configuration = k8s.Configuration()
    configuration.host = f"http://127.0.0.1:{free_port()}"
    configuration.retries = 0
    kube = Kube(k8s.ApiClient(configuration))
    api = await dashboard(kube=kube, namespace="oracle")
    doc = await (await api.get("/api/status")).json()
    assert "Kubernetes API unreachable while trying to list pods" in doc["problems"][0]["text"]
    assert "Traceback" not in json.dumps(doc)


async def test_alert_state_is_read_from_its_config_map(dashboard: Any, fake_kube: Any) -> None:
    """The alerter's ConfigMap is shown; missing, empty or forbidden is a sentence, not an error."""
    client = await dashboard(kube=Kube(fake_kube.client()), namespace="oracle",
                             alert_state_configmap="oracle-alerter-state", refresh=0.01)

    async def alerts() -> dict[str, Any]:
        await asyncio.sleep(0.02)
        response = await client.get("/api/status")
        assert response.status == 200
        found: dict[str, Any] = (await response.json())["alerts"]
        return found

    missing = await alerts()
    assert missing["readable"] is False and "does not exist yet" in missing["error"]
    assert missing["source"] == "ConfigMap oracle/oracle-alerter-state"

    fake_kube.put_config_map("oracle", "oracle-alerter-state", {"other": "x"})
    assert "no key state.json" in (await alerts())["error"]

    fake_kube.put_config_map("oracle", "oracle-alerter-state",
                             {"state.json": json.dumps(alert_state())})
    shown = await alerts()
    assert shown["readable"] is True
    assert shown["alerts"][0]["key"].startswith("error_rate|oracle-1|")

    fake_kube.forbid.add("configmaps")
    forbidden = await alerts()
    assert forbidden["readable"] is False and "403" in forbidden["error"]
