"""A small local stand-in for the Kubernetes API: pods and ConfigMaps, failures included.

It answers the real client with real Kubernetes JSON (PodList, ConfigMap, Status) on an
ephemeral 127.0.0.1 port, from a thread of its own so that the blocking client can call it.
Failure injection: ``forbid`` (403 for a resource), ``conflicts`` (409s on the next writes),
``delay`` (a slow answer).
"""

from __future__ import annotations

import asyncio
import copy
import threading
from typing import Any

from aiohttp import web


def pod(name: str, ip: str | None = "10.0.0.1", phase: str = "Running", ready: bool = True,
        labels: dict[str, str] | None = None, namespace: str = "oracle") -> dict[str, Any]:
    """A Pod object as the API server returns it."""
    status: dict[str, Any] = {"phase": phase, "conditions": [
        {"type": "Ready", "status": "True" if ready else "False",
         "lastTransitionTime": "2026-11-28T08:00:00Z"}]}
    if ip:
        status["podIP"] = ip
        status["podIPs"] = [{"ip": ip}]
    return {
        "kind": "Pod", "apiVersion": "v1",
        "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{name}",
                     "resourceVersion": "100",
                     "labels": labels or {"app.kubernetes.io/component": "oracle"},
                     "creationTimestamp": "2026-11-28T07:00:00Z"},
        "spec": {"nodeName": "node-1", "containers": [{"name": "oracle", "image": "oracle:1"}]},
        "status": status,
    }


def _status(code: int, reason: str, message: str) -> web.Response:
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}
    return web.json_response(body, status=code)


def _matches(labels: dict[str, str], selector: str) -> bool:
    for term in filter(None, (t.strip() for t in selector.split(","))):
        key, _, value = term.partition("=")
        if labels.get(key.rstrip("=!")) != value.lstrip("="):
            return False
    return True


class FakeKubeAPI:
    """Run with ``start()``; ``url`` is then the API server address for the client."""

    def __init__(self) -> None:
        self.pods: list[dict[str, Any]] = []
        self.config_maps: dict[tuple[str, str], dict[str, Any]] = {}
        self.forbid: set[str] = set()  # "pods", "configmaps"
        self.conflicts = 0  # the next N writes answer 409
        self.delay = 0.0
        self.requests: list[tuple[str, str]] = []
        self._version = 1000
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self.url = ""

    # -- state helpers ----------------------------------------------------------------------

    def bump(self) -> str:
        self._version += 1
        return str(self._version)

    def put_config_map(self, namespace: str, name: str, data: dict[str, str]) -> None:
        """Write a ConfigMap directly, as another writer would (bumps its resourceVersion)."""
        with self._lock:
            self.config_maps[(namespace, name)] = {
                "kind": "ConfigMap", "apiVersion": "v1",
                "metadata": {"name": name, "namespace": namespace,
                             "resourceVersion": self.bump()},
                "data": dict(data)}

    # -- handlers ---------------------------------------------------------------------------

    async def _pods(self, request: web.Request) -> web.Response:
        await self._slow()
        ns = request.match_info["ns"]
        if "pods" in self.forbid:
            return _status(403, "Forbidden", f'pods is forbidden: User "system:serviceaccount:'
                                             f'{ns}:dashboard" cannot list resource "pods" in '
                                             f'API group "" in the namespace "{ns}"')
        selector = request.query.get("labelSelector", "")
        items = [p for p in self.pods if p["metadata"]["namespace"] == ns
                 and _matches(p["metadata"].get("labels", {}), selector)]
        return web.json_response({"kind": "PodList", "apiVersion": "v1",
                                  "metadata": {"resourceVersion": str(self._version)},
                                  "items": items})

    async def _get_cm(self, request: web.Request) -> web.Response:
        await self._slow()
        ns, name = request.match_info["ns"], request.match_info["name"]
        if "configmaps" in self.forbid:
            return _status(403, "Forbidden", f'configmaps "{name}" is forbidden')
        with self._lock:
            cm = self.config_maps.get((ns, name))
        if cm is None:
            return _status(404, "NotFound", f'configmaps "{name}" not found')
        return web.json_response(cm)

    async def _create_cm(self, request: web.Request) -> web.Response:
        await self._slow()
        ns = request.match_info["ns"]
        body = await request.json()
        name = body["metadata"]["name"]
        with self._lock:
            if self.conflicts > 0 or (ns, name) in self.config_maps:
                self.conflicts = max(self.conflicts - 1, 0)
                return _status(409, "AlreadyExists", f'configmaps "{name}" already exists')
            body["metadata"].update(namespace=ns, resourceVersion=self.bump())
            body.setdefault("kind", "ConfigMap")
            body.setdefault("apiVersion", "v1")
            self.config_maps[(ns, name)] = body
        return web.json_response(body, status=201)

    async def _replace_cm(self, request: web.Request) -> web.Response:
        await self._slow()
        ns, name = request.match_info["ns"], request.match_info["name"]
        body = await request.json()
        with self._lock:
            current = self.config_maps.get((ns, name))
            if current is None:
                return _status(404, "NotFound", f'configmaps "{name}" not found')
            wanted = body.get("metadata", {}).get("resourceVersion")
            if self.conflicts > 0 or wanted != current["metadata"]["resourceVersion"]:
                self.conflicts = max(self.conflicts - 1, 0)
                return _status(409, "Conflict", f'Operation cannot be fulfilled on configmaps '
                                                f'"{name}": the object has been modified; please '
                                                f'apply your changes to the latest version and '
                                                f'try again')
            body["metadata"].update(namespace=ns, resourceVersion=self.bump())
            body.setdefault("kind", "ConfigMap")
            body.setdefault("apiVersion", "v1")
            self.config_maps[(ns, name)] = copy.deepcopy(body)
        return web.json_response(body)

    async def _slow(self) -> None:
        if self.delay:
            await asyncio.sleep(self.delay)

    @web.middleware
    async def _record(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests.append((request.method, request.path))
        return await handler(request)

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> FakeKubeAPI:
        ready = threading.Event()

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            app = web.Application(middlewares=[self._record])
            app.router.add_get("/api/v1/namespaces/{ns}/pods", self._pods)
            app.router.add_get("/api/v1/namespaces/{ns}/configmaps/{name}", self._get_cm)
            app.router.add_post("/api/v1/namespaces/{ns}/configmaps", self._create_cm)
            app.router.add_put("/api/v1/namespaces/{ns}/configmaps/{name}", self._replace_cm)
            self._runner = web.AppRunner(app)
            loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            loop.run_until_complete(site.start())
            port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            self.url = f"http://127.0.0.1:{port}"
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=serve, daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    def client(self) -> Any:
        """A real ``kubernetes`` ApiClient pointed at this server."""
        from kubernetes import client

        configuration = client.Configuration()
        configuration.host = self.url
        return client.ApiClient(configuration)
