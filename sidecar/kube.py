"""The one module that imports the Kubernetes client. Everything else gets plain dataclasses.

Login is in-cluster service account first, else kubeconfig, else a :class:`KubeError` that says
what is missing. Client failures become the project's own errors, the library's exception
chained as the cause. Calls are blocking; async callers run them with ``asyncio.to_thread``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException
from urllib3.exceptions import HTTPError as Urllib3Error

if TYPE_CHECKING:  # the client's models, for their (typed) fields
    from kubernetes.client import V1ConfigMap

__all__ = [
    "Kube",
    "KubeConflict",
    "KubeError",
    "KubeForbidden",
    "KubeNotFound",
    "Pod",
    "current_namespace",
]

_NAMESPACE_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
TIMEOUT = 5.0  # seconds for one API call
_T = TypeVar("_T")


class KubeError(RuntimeError):
    """The Kubernetes API could not be used; ``status`` is the HTTP status when there was one."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class KubeForbidden(KubeError):
    """403: the service account lacks a permission (RBAC)."""


class KubeNotFound(KubeError):
    """404: the object does not exist."""


class KubeConflict(KubeError):
    """409: someone else changed or created the object first (optimistic concurrency)."""


@dataclass(frozen=True, slots=True)
class Pod:
    """What the dashboard and the alerter need to know of one Oracle pod."""

    name: str
    namespace: str
    ip: str | None
    phase: str
    ready: bool
    node: str | None = None
    terminating: bool = False  # deletionTimestamp is set: the pod is going away


def current_namespace() -> str | None:
    """The namespace this pod runs in (service account file), or None outside a cluster."""
    try:
        with open(_NAMESPACE_FILE) as f:
            return f.read().strip() or None
    except OSError:
        return None


class Kube:
    """Pod listing and ConfigMap access, the only calls this project makes."""

    def __init__(self, api_client: client.ApiClient | None = None) -> None:
        if api_client is None:
            api_client = _login()
        self._core = client.CoreV1Api(api_client)

    def list_pods(self, namespace: str, selector: str) -> list[Pod]:
        """Pods in ``namespace`` matching the label ``selector``, sorted by name."""
        reply = self._call("list pods", self._core.list_namespaced_pod, namespace,
                           label_selector=selector)
        pods = []
        for item in reply.items or []:
            meta, status = item.metadata, item.status
            if meta is None or not meta.name:
                continue  # never from a real API server: a pod always has a name
            conditions = (status.conditions or []) if status else []
            ready = any(c.type == "Ready" and c.status == "True" for c in conditions)
            pods.append(Pod(
                name=meta.name,
                namespace=meta.namespace or namespace,
                ip=(status.pod_ip or None) if status else None,
                phase=(status.phase or "Unknown") if status else "Unknown",
                ready=ready,
                node=item.spec.node_name if item.spec else None,
                terminating=meta.deletion_timestamp is not None,
            ))
        return sorted(pods, key=lambda p: p.name)

    def read_config_map(self, namespace: str, name: str) -> tuple[dict[str, str], str] | None:
        """(data, resourceVersion) of a ConfigMap, or None when it does not exist."""
        try:
            cm = self._call("read configmap", self._core.read_namespaced_config_map, name,
                            namespace)
        except KubeNotFound:
            return None
        return dict(cm.data or {}), _resource_version(cm)

    def create_config_map(self, namespace: str, name: str, data: dict[str, str],
                          labels: dict[str, str] | None = None) -> str:
        """Create a ConfigMap; KubeConflict when it exists already. Returns its resourceVersion."""
        body = client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name, labels=labels),
                                  data=data)
        cm = self._call("create configmap", self._core.create_namespaced_config_map, namespace,
                        body)
        return _resource_version(cm)

    def replace_config_map(self, namespace: str, name: str, data: dict[str, str],
                           resource_version: str) -> str:
        """Replace a ConfigMap only if it is still at ``resource_version`` (else KubeConflict)."""
        body = client.V1ConfigMap(
            metadata=client.V1ObjectMeta(name=name, resource_version=resource_version),
            data=data)
        cm = self._call("replace configmap", self._core.replace_namespaced_config_map, name,
                        namespace, body)
        return _resource_version(cm)

    @staticmethod
    def _call(what: str, func: Callable[..., _T], *args: object, **kwargs: object) -> _T:
        try:
            return func(*args, _request_timeout=TIMEOUT, **kwargs)
        except ApiException as err:
            status = int(err.status or 0)
            kind = {403: KubeForbidden, 404: KubeNotFound, 409: KubeConflict}.get(status,
                                                                                   KubeError)
            reason = _reason(err)
            hint = " (check the Role bound to this service account)" if status == 403 else ""
            raise kind(f"Kubernetes API refused to {what}: {status} {reason}{hint}",
                       status) from err
        except (Urllib3Error, OSError) as err:
            raise KubeError(f"Kubernetes API unreachable while trying to {what}: "
                            f"{type(err).__name__}") from err


def _resource_version(cm: V1ConfigMap) -> str:
    """The ConfigMap's resourceVersion, the token of the next compare-and-swap."""
    return str(cm.metadata.resource_version if cm.metadata else None)


def _reason(err: ApiException) -> str:
    import json

    try:
        return str(json.loads(err.body or "{}").get("message") or err.reason or "")
    except ValueError:
        return str(err.reason or "")


def _login() -> client.ApiClient:
    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except ConfigException:
        try:
            config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=os.environ.get("KUBECONFIG"))
        except (ConfigException, OSError) as err:
            raise KubeError("no Kubernetes credentials: not running in a pod with a service "
                            "account, and no usable kubeconfig "
                            f"({err}); give --target URL to watch sidecars directly") from err
    return client.ApiClient()
