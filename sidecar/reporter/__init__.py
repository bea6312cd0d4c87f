"""The reporter: counts RPCs inside the gRPC process and pushes them to the sidecar.

Importing it needs only the standard library; grpcio is imported by the interceptors alone.
A service copies this pattern so it runs unchanged when the package is missing::

    try:
        from sidecar import reporter as monitoring
    except ImportError:
        monitoring = None

    rep = monitoring.start(service="nps.oracle.OracleService", version="1.4.2",
                           services=[oracle_pb2.DESCRIPTOR.services_by_name["OracleService"]])
    server = grpc.server(pool, interceptors=[rep.server_interceptor()])
    rep.set_health("healthy", {"model": "loaded"})

    @monitoring.track_rpc("Batch/nightly")
    def nightly(): ...
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import Any

from sidecar import protocol
from sidecar.reporter.core import DEFAULT_SOCKET, Methods, Reporter

__all__ = ["DEFAULT_SOCKET", "Reporter", "close", "get", "start", "track_rpc"]

_current: Reporter | None = None
_guard = threading.Lock()


def start(
    service: str = "",
    version: str = "",
    methods: Methods = (),
    socket_path: str | None = None,
    interval: float = 1.0,
    buckets: tuple[float, ...] = protocol.DEFAULT_BUCKETS,
    max_series: int = 1000,
    services: Iterable[Any] = (),
) -> Reporter:
    """Make the process-wide reporter and start pushing (once a second by default).

    Declared methods are reported at zero from the first push under their true ``grpc_type``,
    so every method has its series before any traffic (go-grpc-prometheus's
    ``InitializeMetrics``). ``services``: the generated code's service descriptors,
    ``oracle_pb2.DESCRIPTOR.services_by_name["OracleService"]``, which know each method's
    streaming flags. ``methods``: ``/pkg.Service/Method`` names (unary), or a
    ``{name: type}`` mapping / ``(name, type)`` pairs with type ``unary``, ``client_stream``,
    ``server_stream`` or ``bidi_stream``. ``socket_path`` defaults to
    ``ORACLE_METRICS_SOCKET`` or ``/var/run/oracle-sidecar/metrics.sock``. A second call returns
    the reporter already running.
    """
    global _current
    with _guard:
        if _current is None:
            _current = Reporter(service, version, methods, socket_path, interval, buckets,
                                max_series, services=services)
        elif (service, version) != (_current.service, _current.version):
            logging.getLogger("sidecar.reporter").warning(
                "reporter already started for %r %r; start(%r, %r) returns that one",
                _current.service, _current.version, service, version)
        return _current.start()


def get() -> Reporter | None:
    """The process-wide reporter made by :func:`start`, or None."""
    return _current


def close() -> None:
    """Send the final snapshot and stop the process-wide reporter (also done at exit)."""
    global _current
    with _guard:
        if _current is not None:
            _current.close()
            _current = None


class track_rpc:  # a class used like a function: @track_rpc("name") / with track_rpc(...)
    """Time a block or a function as an RPC on the process-wide reporter.

    Does nothing (and costs next to nothing) when no reporter was started.
    """

    __slots__ = ("_name", "_tracked")

    def __init__(self, name: str) -> None:
        self._name = name
        self._tracked: Any = None

    def __enter__(self) -> track_rpc:
        if _current is not None:
            self._tracked = _current.track(self._name)
            self._tracked.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._tracked is not None:
            self._tracked.__exit__(*exc)
            self._tracked = None

    def __call__(self, func: Any) -> Any:
        import functools

        name = self._name

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with track_rpc(name):
                return func(*args, **kwargs)

        return wrapper
