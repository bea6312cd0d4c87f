"""Where the Oracle pods' sidecars are, and fetching their JSON safely.

Shared by the dashboard and the alerter. Targets are either fixed URLs (``--target`` /
``ORACLE_HTTP_URL``) or the pods matching a label selector, found through the Kubernetes API
(:mod:`sidecar.kube`, imported only when discovery is used).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp

from sidecar.options import DEFAULT_SELECTOR, SIDECAR_PORT

if TYPE_CHECKING:  # the Kubernetes client is imported only when discovery is used
    from sidecar.kube import Kube

__all__ = ["Discovery", "Fetched", "Target", "discover", "fetch_json"]

MAX_BODY = 4 * 1024 * 1024  # a sidecar's snapshot is KiBs; more than this is garbage


@dataclass(frozen=True, slots=True)
class Target:
    """One sidecar to ask. ``url`` is None for a pod that has no IP yet."""

    name: str
    url: str | None
    namespace: str | None = None
    phase: str | None = None
    pod_ready: bool | None = None
    problem: str | None = None  # why it cannot be asked (e.g. "Pending, no IP yet")
    terminating: bool = False  # the pod is being deleted (rollout, scale-down)


@dataclass(frozen=True, slots=True)
class Discovery:
    """How targets are found: fixed URLs, or a namespace and selector in the cluster."""

    urls: tuple[str, ...] = ()
    namespace: str | None = None
    selector: str = DEFAULT_SELECTOR
    port: int = SIDECAR_PORT


@dataclass(frozen=True, slots=True)
class Fetched:
    """The answer of one sidecar: ``body`` when it answered JSON, else ``error`` in words."""

    target: Target
    status: int | None
    body: Any
    error: str | None
    seconds: float


async def discover(how: Discovery, kube: Kube | None = None) -> list[Target]:
    """The targets now. Raises ``sidecar.kube.KubeError`` when the cluster cannot be asked.

    ``kube`` is a :class:`sidecar.kube.Kube` (made on first use when None and there are no
    fixed URLs).
    """
    if how.urls:
        return [Target(name=url, url=url) for url in how.urls]
    from sidecar import kube as k8s

    namespace = how.namespace or k8s.current_namespace() or "default"
    api = kube if kube is not None else await asyncio.to_thread(k8s.Kube)
    pods = await asyncio.to_thread(api.list_pods, namespace, how.selector)
    out = []
    for pod in pods:
        problem = None if pod.ip else f"pod is {pod.phase} and has no IP yet"
        url = f"http://{_host(pod.ip)}:{how.port}" if pod.ip else None
        out.append(Target(pod.name, url, pod.namespace, pod.phase, pod.ready, problem,
                          pod.terminating))
    return out


def _host(ip: str) -> str:
    return f"[{ip}]" if ":" in ip else ip


async def fetch_json(session: aiohttp.ClientSession, target: Target, path: str,
                     timeout: float = 2.0, max_body: int = MAX_BODY) -> Fetched:
    """GET ``path`` from a target within ``timeout``; never raises, says what went wrong."""
    loop = asyncio.get_running_loop()
    started = loop.time()

    def done(status: int | None, body: Any, error: str | None) -> Fetched:
        return Fetched(target, status, body, error, round(loop.time() - started, 3))

    if target.url is None:
        return done(None, None, target.problem or "no address")
    try:
        async with asyncio.timeout(timeout):
            async with session.get(target.url + path, allow_redirects=False) as response:
                if response.content_length is not None and response.content_length > max_body:
                    return done(response.status, None,
                                f"answer too large ({response.content_length} bytes)")
                # read(n) returns what has arrived so far, not n bytes: gather to the end.
                raw = bytearray()
                async for chunk in response.content.iter_any():
                    raw += chunk
                    if len(raw) > max_body:
                        return done(response.status, None,
                                    f"answer larger than {max_body} bytes")
                try:
                    body = json.loads(raw)
                except ValueError:
                    return done(response.status, None,
                                f"answered HTTP {response.status} with something that is not "
                                f"JSON")
                return done(response.status, body, None)
    except TimeoutError:
        return done(None, None, f"no answer within {timeout:g} s")
    except aiohttp.ClientError as err:
        return done(None, None, f"unreachable: {type(err).__name__}: {err}"[:300])
    except OSError as err:
        return done(None, None, f"unreachable: {err.strerror or err}"[:300])
