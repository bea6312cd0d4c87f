"""gRPC server interceptors (sync ``grpc.server`` and ``grpc.aio.server``) that feed a Reporter.

The code recorded is OK on success, the code set through ``context.abort``/``context.set_code``
when there is one, and Unknown for an uncaught exception (whose type is counted too). Service,
method and type come from the full method name and the handler's kind. Codes are recorded under
Go's names (``NotFound``, not ``NOT_FOUND``), as go-grpc-prometheus exports them.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import grpc
import grpc.aio

from sidecar.protocol import CODES
from sidecar.reporter.core import Reporter, Series

__all__ = ["AioServerInterceptor", "ServerInterceptor"]

# grpc.StatusCode's value is (number, text); CODES is Go's names by number.
_NAMES = {code: CODES[code.value[0]] for code in grpc.StatusCode}
_BY_NUMBER = {code.value[0]: CODES[code.value[0]] for code in grpc.StatusCode}
_perf = time.perf_counter


def _code(context: Any, failed: BaseException | None) -> tuple[str, str | None]:
    """The status name the RPC ended with, and the exception type to count (uncaught only)."""
    try:
        raw = context.code()
    except Exception:
        raw = None
    if raw is not None:
        name = _NAMES.get(raw) if isinstance(raw, grpc.StatusCode) else _BY_NUMBER.get(raw)
        if name is not None and not (name == "OK" and failed is not None):
            return name, None
    if failed is None:
        return "OK", None
    if isinstance(failed, grpc.aio.AbortError):  # aborted without a readable code
        return "Unknown", None
    return "Unknown", type(failed).__name__


def _kind(handler: grpc.RpcMethodHandler) -> tuple[str, str]:
    """(attribute holding the behaviour, gRPC type label) of a method handler."""
    if handler.request_streaming and handler.response_streaming:
        return "stream_stream", "bidi_stream"
    if handler.request_streaming:
        return "stream_unary", "client_stream"
    if handler.response_streaming:
        return "unary_stream", "server_stream"
    return "unary_unary", "unary"


_FACTORIES = {
    "unary_unary": grpc.unary_unary_rpc_method_handler,
    "unary_stream": grpc.unary_stream_rpc_method_handler,
    "stream_unary": grpc.stream_unary_rpc_method_handler,
    "stream_stream": grpc.stream_stream_rpc_method_handler,
}


def _rewrap(handler: grpc.RpcMethodHandler, attr: str, behavior: Callable[..., Any]) -> Any:
    return _FACTORIES[attr](
        behavior,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


# Services whose RPCs are plumbing, not the service's work: the sidecar's own readiness probe
# calls grpc.health.v1 every second, and counting it would show traffic on an idle server.
SKIPPED = ("/grpc.health.v1.Health/", "/grpc.reflection.")


class _Wrapping:
    """The handler cache both interceptors share: one wrapped handler per method."""

    def __init__(self, reporter: Reporter, skip: tuple[str, ...] = SKIPPED) -> None:
        self._reporter = reporter
        self._skip = skip
        self._cache: dict[str, tuple[Any, Any]] = {}

    def _wrapped(self, handler: Any, method: str) -> Any:
        cached = self._cache.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        if method.startswith(self._skip):
            wrapped = handler
        else:
            attr, rpc_type = _kind(handler)
            behaviour = self._wrap(getattr(handler, attr), method, rpc_type,
                                   handler.request_streaming, handler.response_streaming)
            wrapped = _rewrap(handler, attr, behaviour)
        if len(self._cache) < 10_000:
            self._cache[method] = (handler, wrapped)
        return wrapped

    def _wrap(self, inner: Callable[..., Any], method: str, rpc_type: str,
              requests: bool, responses: bool) -> Callable[..., Any]:
        raise NotImplementedError


# Messages are counted as go-grpc-prometheus counts them: a unary request or response is one
# message per call, one sent only when the call ends OK (Reporter.rows derives both for unary
# rows); a stream counts each request the handler reads and each response it yields.

def _counted_requests(series: Series, requests: Iterator[Any]) -> Iterator[Any]:
    for request in requests:
        series.msg_received += 1
        yield request


async def _acounted_requests(series: Series, requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    async for request in requests:
        series.msg_received += 1
        yield request


class ServerInterceptor(_Wrapping, grpc.ServerInterceptor):  # type: ignore[misc]
    """For ``grpc.server(..., interceptors=[reporter.server_interceptor()])``."""

    def intercept_service(self, continuation: Callable[..., Any], details: Any) -> Any:
        handler = continuation(details)
        return None if handler is None else self._wrapped(handler, details.method)

    def _wrap(self, inner: Callable[..., Any], method: str, rpc_type: str,
              requests: bool, responses: bool) -> Callable[..., Any]:
        reporter = self._reporter
        observe = reporter.observe

        if not responses:
            def unary(request: Any, context: Any) -> Any:
                series = reporter.series(method, rpc_type)
                if series is None:
                    return inner(request, context)
                series.started += 1
                if requests:
                    request = _counted_requests(series, request)
                t0 = _perf()
                try:
                    response = inner(request, context)
                except BaseException as err:
                    observe(series, _perf() - t0, *_code(context, err))
                    raise
                elapsed = _perf() - t0
                code = "OK" if context.code() is None else _code(context, None)[0]
                observe(series, elapsed, code)
                if requests and code == "OK":
                    series.msg_sent += 1
                return response

            return unary

        def streamed(request: Any, context: Any) -> Iterator[Any]:
            series = reporter.series(method, rpc_type)
            if series is None:
                yield from inner(request, context)
                return
            series.started += 1
            if requests:
                request = _counted_requests(series, request)
            else:
                series.msg_received += 1
            t0 = _perf()
            try:
                for response in inner(request, context):
                    series.msg_sent += 1
                    yield response
            except BaseException as err:
                observe(series, _perf() - t0, *_code(context, err))
                raise
            observe(series, _perf() - t0, *_code(context, None))

        return streamed


class AioServerInterceptor(_Wrapping, grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """For ``grpc.aio.server(interceptors=[reporter.aio_server_interceptor()])``.

    Stream messages read with ``context.read()`` or written with ``context.write()`` instead of
    the request iterator and ``yield`` are not counted in ``grpc_server_msg_*_total``.
    """

    async def intercept_service(
        self, continuation: Callable[..., Awaitable[Any]], details: Any
    ) -> Any:
        handler = await continuation(details)
        return None if handler is None else self._wrapped(handler, details.method)

    def _wrap(self, inner: Callable[..., Any], method: str, rpc_type: str,
              requests: bool, responses: bool) -> Callable[..., Any]:
        reporter = self._reporter
        observe = reporter.observe

        if not responses:
            async def unary(request: Any, context: Any) -> Any:
                series = reporter.series(method, rpc_type)
                if series is None:
                    return await inner(request, context)
                series.started += 1
                if requests and hasattr(request, "__aiter__"):
                    request = _acounted_requests(series, request)
                t0 = _perf()
                try:
                    response = await inner(request, context)
                except BaseException as err:
                    observe(series, _perf() - t0, *_code(context, err))
                    raise
                code = _code(context, None)[0]
                observe(series, _perf() - t0, code)
                if requests and code == "OK":
                    series.msg_sent += 1
                return response

            return unary

        async def streamed(request: Any, context: Any) -> AsyncIterator[Any]:
            series: Series | None = reporter.series(method, rpc_type)
            t0 = _perf()
            if series is not None:
                series.started += 1
                if not requests:
                    series.msg_received += 1
                elif hasattr(request, "__aiter__"):
                    request = _acounted_requests(series, request)
            try:
                result = inner(request, context)
                if hasattr(result, "__aiter__"):
                    async for item in result:
                        if series is not None:
                            series.msg_sent += 1
                        yield item
                else:  # a coroutine that writes with context.write()
                    await result
            except BaseException as err:
                if series is not None:
                    observe(series, _perf() - t0, *_code(context, err))
                raise
            if series is not None:
                observe(series, _perf() - t0, *_code(context, None))

        return streamed
