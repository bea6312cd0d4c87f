"""``oracle-sidecar demo-oracle``: a demo of the real Oracle, instrumented as a real one should be.

A grpcio server for ``nps.oracle.OracleService`` (the eight unary RPCs, deterministic answers)
and the standard ``grpc.health.v1`` service, reporting to the sidecar through
``sidecar.reporter`` when that package is importable and running the same without it. Errors,
latency and health are knobs (:mod:`sidecar.demo.knobs`), set by flags at start and changed at
run time through the localhost control endpoint (:mod:`sidecar.demo.control`).

On SIGTERM or SIGINT: the health service and the reporter say NOT_SERVING/down at once, the
server keeps answering for ``--drain-seconds`` (time for Kubernetes to take the pod out of the
Service), then stops taking RPCs and gives those in flight ``--grace-seconds`` to finish.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import random
import signal
import string
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from types import FrameType
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from sidecar import __version__, options
from sidecar.demo import METHODS, SERVICE, full_method
from sidecar.demo._pb import oracle_pb2 as pb
from sidecar.demo._pb import oracle_pb2_grpc as pb_grpc
from sidecar.demo.control import ControlServer
from sidecar.demo.knobs import (
    HEALTH_STATES,
    Delay,
    Faults,
    KnobError,
    Knobs,
    argument_type,
    parse_delay,
    parse_error_code,
    parse_method_value,
    parse_rate,
    parse_scenario,
)
from sidecar.logs import setup_logging

# The pattern a real service copies: monitoring is optional, and without the package the
# service runs exactly the same, minus the reports.
try:
    from sidecar import reporter as monitoring
except ImportError:
    monitoring = None  # type: ignore[assignment]

__all__ = ["DemoOracle", "OracleServicer", "Settings", "configure", "run"]

log = logging.getLogger("nps.oracle")

# What HealthCheck answers for each knob state (the real Oracle says "unhealthy", not "down").
_HEALTH_ANSWER = {"healthy": "healthy", "degraded": "degraded", "down": "unhealthy"}
_THEMES = (
    "", "new beginnings", "patience and partnership", "expression", "steady work",
    "change", "care for others", "reflection", "ambition", "completion",
)


@dataclass(frozen=True)
class Settings:
    """Everything the demo Oracle is started with; tests build it directly."""

    host: str = "[::]"
    port: int = 50052
    control_host: str = "127.0.0.1"
    control_port: int | None = 50053  # None: no control endpoint
    workers: int = 64
    faults: Faults = field(default_factory=Faults)
    scenario: tuple[str, ...] = ()
    phase_seconds: float = 120.0
    seed: int | None = None
    monitoring: bool = True
    socket_path: str | None = None  # None: the reporter's default (ORACLE_METRICS_SOCKET)
    interval: float = 1.0


class OracleServicer(pb_grpc.OracleServiceServicer):  # type: ignore[misc]
    """The eight RPCs: inject the configured faults, then answer deterministically."""

    def __init__(self, knobs: Knobs, stopping: threading.Event, seed: int | None = None) -> None:
        self._knobs = knobs
        self._stopping = stopping
        self._rng = random.Random(seed)
        self._started = time.monotonic()

    def _faults(self, method: str, context: grpc.ServicerContext) -> Faults:
        """Wait the injected delay, fail if the error dice say so; returns the faults used."""
        faults = self._knobs.faults
        delay: Delay | None = faults.latency_for(method)
        if delay is not None:
            seconds = delay.sample(self._rng)
            remaining = context.time_remaining()
            if remaining is not None and seconds > remaining:
                # No point holding a thread past the caller's deadline: fail as it would.
                self._stopping.wait(max(remaining, 0.0))
                context.abort(grpc.StatusCode.DEADLINE_EXCEEDED,
                              f"injected delay of {seconds:.3f} s outlived the deadline")
            if seconds > 0:
                self._stopping.wait(seconds)
        rate = faults.error_rate_for(method)
        if rate > 0 and self._rng.random() < rate:
            log.debug("injected error", extra={"rpc_method": method, "code": faults.error_code})
            context.abort(grpc.StatusCode[faults.error_code],
                          f"injected by the demo: {method} fails {rate:.0%} of calls")
        return faults

    def GetReading(self, request: pb.ReadingRequest, context: grpc.ServicerContext
                   ) -> pb.ReadingResponse:
        self._faults("GetReading", context)
        born = _date_field(context, "birth_date", request.birth_date)
        day = _date_field(context, "date", request.date) if request.date else date(2026, 1, 1)
        life_path = _reduce(_digit_sum(born.isoformat()))
        personal_day = _reduce(life_path + _digit_sum(day.isoformat()))
        return pb.ReadingResponse(
            life_path=life_path,
            personal_day=personal_day,
            energy=_fraction(born.isoformat(), request.birth_time, day.isoformat()),
            summary=f"Life path {life_path}, personal day {personal_day}: "
            f"a day for {_THEMES[_reduce(personal_day, masters=False)]}.",
        )

    def GetNameReading(self, request: pb.NameReadingRequest, context: grpc.ServicerContext
                       ) -> pb.NameReadingResponse:
        self._faults("GetNameReading", context)
        letters = [c for c in request.name.lower() if c in string.ascii_lowercase]
        if not letters:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "name needs at least one letter a-z")
        values = [(ord(c) - ord("a")) % 9 + 1 for c in letters]
        expression = _reduce(sum(values))
        soul_urge = _reduce(sum(v for c, v in zip(letters, values, strict=True) if c in "aeiou")
                            or 1)
        return pb.NameReadingResponse(
            expression=expression,
            soul_urge=soul_urge,
            summary=f"{request.name}: expression {expression}, soul urge {soul_urge}, "
            f"drawn to {_THEMES[_reduce(expression, masters=False)]}.",
        )

    def GetQuestionSign(self, request: pb.QuestionSignRequest, context: grpc.ServicerContext
                        ) -> pb.QuestionSignResponse:
        self._faults("GetQuestionSign", context)
        if not request.question.strip():
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "question is empty")
        sign = ("yes", "no", "wait")[_number(request.question, request.asked_at[:10]) % 3]
        return pb.QuestionSignResponse(
            sign=sign,
            confidence=0.5 + _fraction(request.question, request.asked_at) / 2,
            summary=f"The sign for {request.question!r} is {sign}.",
        )

    def GetDailyInsight(self, request: pb.DailyInsightRequest, context: grpc.ServicerContext
                        ) -> pb.DailyInsightResponse:
        self._faults("GetDailyInsight", context)
        born = _date_field(context, "birth_date", request.birth_date)
        day = _date_field(context, "date", request.date) if request.date else date(2026, 1, 1)
        theme = _THEMES[_reduce(_digit_sum(born.isoformat() + day.isoformat()), masters=False)]
        seed = _number(born.isoformat(), day.isoformat())
        return pb.DailyInsightResponse(
            title=f"A day for {theme}",
            insight=f"On {day.isoformat()}, lean into {theme}; small steps count.",
            lucky_numbers=sorted(random.Random(seed).sample(range(1, 50), 3)),
        )

    def SuggestRange(self, request: pb.SuggestRangeRequest, context: grpc.ServicerContext
                     ) -> pb.SuggestRangeResponse:
        self._faults("SuggestRange", context)
        low, high, count = request.low, request.high, request.count or 1
        if high < low or not 0 < count <= min(100, high - low + 1):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          "need low <= high and 1 <= count <= min(100, high - low + 1)")
        rng = random.Random(_number(str(low), str(high), str(count), request.purpose))
        numbers = sorted(rng.sample(range(low, high + 1), count))
        return pb.SuggestRangeResponse(
            numbers=numbers,
            summary=f"{count} number(s) between {low} and {high} for {request.purpose or 'you'}.",
        )

    def AnalyzeSession(self, request: pb.AnalyzeSessionRequest, context: grpc.ServicerContext
                       ) -> pb.AnalyzeSessionResponse:
        self._faults("AnalyzeSession", context)
        themes: dict[str, int] = {}
        for question in request.questions:
            theme = _THEMES[1 + _number(question) % 9]
            themes[theme] = themes.get(theme, 0) + 1
        top = max(themes, key=lambda t: themes[t]) if themes else "nothing yet"
        coherence = max(themes.values()) / len(request.questions) if request.questions else 0.0
        return pb.AnalyzeSessionResponse(
            question_count=len(request.questions),
            coherence=coherence,
            summary=f"{len(request.questions)} question(s); the session circles {top}.",
            themes=themes,
        )

    def GetTimingAlignment(self, request: pb.TimingAlignmentRequest,
                           context: grpc.ServicerContext) -> pb.TimingAlignmentResponse:
        self._faults("GetTimingAlignment", context)
        born = _date_field(context, "birth_date", request.birth_date)
        alignment = _fraction(born.isoformat(), request.planned_at, request.activity)
        best_hour = f"{_number(born.isoformat(), request.activity) % 24:02d}:00"
        return pb.TimingAlignmentResponse(
            alignment=alignment,
            best_hour=best_hour,
            summary=f"{request.activity or 'It'} aligns at {alignment:.0%}; best near {best_hour}.",
        )

    def HealthCheck(self, request: pb.HealthCheckRequest, context: grpc.ServicerContext
                    ) -> pb.HealthCheckResponse:
        faults = self._faults("HealthCheck", context)
        return pb.HealthCheckResponse(
            status=_HEALTH_ANSWER[faults.health],
            version=__version__,
            uptime_seconds=round(time.monotonic() - self._started, 3),
            checks=faults.checks(),
        )


def _date_field(context: grpc.ServicerContext, name: str, text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{name} must be a date YYYY-MM-DD")
        raise  # not reached: abort raises


def _number(*parts: str) -> int:
    """A stable number from text (Python's hash() changes from process to process)."""
    digest = hashlib.blake2b("\x1f".join(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def _fraction(*parts: str) -> float:
    return (_number(*parts) % 1000) / 1000


def _digit_sum(text: str) -> int:
    return sum(int(c) for c in text if c.isdigit())


def _reduce(n: int, masters: bool = True) -> int:
    """Sum the digits until one is left (11, 22 and 33 stay, as numerology has it)."""
    while n > 9 and not (masters and n in (11, 22, 33)):
        n = _digit_sum(str(n))
    return max(n, 1)


class DemoOracle:
    """The demo Oracle's gRPC server, health service, reporter, knobs and control endpoint."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._closing = False
        self._stopping = threading.Event()
        self._health = health.HealthServicer()
        self.knobs = Knobs(settings.faults, settings.scenario, settings.phase_seconds,
                           on_change=self._serving_status)
        self.reporter: Any = None
        interceptors: list[grpc.ServerInterceptor] = []
        if settings.monitoring and monitoring is not None:
            self.reporter = monitoring.start(
                service=SERVICE,
                version=__version__,
                methods=[full_method(m) for m in METHODS],
                socket_path=settings.socket_path,
                interval=settings.interval,
            )
            self.reporter.set_health_callback(self._report_health)
            interceptors.append(self.reporter.server_interceptor())
        self._executor = ThreadPoolExecutor(settings.workers, thread_name_prefix="oracle-rpc")
        # grpcio sets SO_REUSEPORT by default: a second Oracle on a busy port would "start"
        # and silently share it. Refuse instead.
        self.server = grpc.server(self._executor, interceptors=interceptors,
                                  options=[("grpc.so_reuseport", 0)])
        pb_grpc.add_OracleServiceServicer_to_server(
            OracleServicer(self.knobs, self._stopping, settings.seed), self.server
        )
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self.server)
        self.port = 0
        self.control: ControlServer | None = None

    @property
    def monitored(self) -> bool:
        """True when the reporter is running (the monitoring package was importable)."""
        return self.reporter is not None

    def start(self) -> None:
        """Bind and serve; raises OSError with the address when a port cannot be bound."""
        address = f"{self.settings.host}:{self.settings.port}"
        try:
            self.port = self.server.add_insecure_port(address)
        except RuntimeError as err:
            raise OSError(f"cannot listen for gRPC on {address}: {err}") from err
        if self.port == 0:
            raise OSError(f"cannot listen for gRPC on {address}")
        if self.settings.control_port is not None:
            try:
                self.control = ControlServer(self.knobs, self.settings.control_host,
                                             self.settings.control_port)
            except OSError as err:
                raise OSError(f"cannot listen for control on {self.settings.control_host}:"
                              f"{self.settings.control_port}: {err.strerror}") from err
        self._serving_status(self.knobs.faults)
        self.server.start()
        self.knobs.start()
        if self.control is not None:
            self.control.start()

    def stop(self, drain: float = 0.0, grace: float = 5.0) -> None:
        """Say NOT_SERVING, answer ``drain`` s more, then stop; in-flight RPCs get ``grace`` s."""
        self._closing = True  # the reporter's next flush says "down"
        self._health.enter_graceful_shutdown()
        if drain > 0:
            time.sleep(drain)
        self.server.stop(grace).wait()
        self._stopping.set()  # wakes handlers still sleeping on injected latency
        self._executor.shutdown(wait=True, cancel_futures=True)
        self.knobs.close()
        if self.control is not None:
            self.control.close()
        if self.reporter is not None:
            self.reporter.close()

    def _serving_status(self, faults: Faults) -> None:
        if self._closing:
            return
        status = (health_pb2.HealthCheckResponse.NOT_SERVING if faults.health == "down"
                  else health_pb2.HealthCheckResponse.SERVING)
        self._health.set("", status)
        self._health.set(SERVICE, status)

    def _report_health(self) -> tuple[str, dict[str, str]]:
        if self._closing:
            return "down", {"shutdown": "the Oracle is stopping"}
        faults = self.knobs.faults
        return faults.health, faults.checks()


# -- command line ------------------------------------------------------------------------------



def configure(parser: argparse.ArgumentParser) -> None:
    """Declare the demo Oracle's flags, each with its env twin."""
    options.add(parser, "--host", env="ORACLE_HOST", default="[::]",
                help="address to listen on for gRPC")
    options.add(parser, "--port", env="ORACLE_PORT", type=options.port, default=50052,
                help="gRPC port (0: any free port)")
    options.add(parser, "--control-port", env="ORACLE_CONTROL_PORT", type=options.port,
                default=50053, help="port of the JSON control endpoint on 127.0.0.1 "
                "(0: any free port); see docs/demo.md")
    options.add(parser, "--workers", env="ORACLE_WORKERS", type=options.positive_int, default=64,
                help="gRPC handler threads (slow calls hold one each)")
    options.add(parser, "--error-rate", env="ORACLE_ERROR_RATE", repeat=True,
                type=argument_type(lambda t: parse_method_value(t, parse_rate)),
                help="[METHOD=]RATE: share of calls that fail, e.g. GetReading=0.2 or 5%%; "
                "repeat for several methods")
    options.add(parser, "--error-code", env="ORACLE_ERROR_CODE",
                type=argument_type(parse_error_code), default="INTERNAL",
                help="gRPC status code of injected errors")
    options.add(parser, "--latency", env="ORACLE_LATENCY", repeat=True,
                type=argument_type(lambda t: parse_method_value(t, parse_delay)),
                help="[METHOD=]DELAY added to calls: 200ms, 100ms..2s (uniform), 12s..15s@0.1 "
                "(10%% of calls); repeat for several methods")
    options.add(parser, "--health", env="ORACLE_HEALTH", default="healthy",
                choices=list(HEALTH_STATES), help="health to report: healthy, degraded "
                "(one named check fails) or down")
    options.add(parser, "--failing-check", env="ORACLE_FAILING_CHECK", default="ephemeris",
                help="the named check that fails when health is degraded or down")
    options.add(parser, "--scenario", env="ORACLE_SCENARIO", type=argument_type(parse_scenario),
                default="off", help="off, cycle (healthy -> errors -> slow -> degraded -> ...), "
                "or a comma list of those phases")
    options.add(parser, "--phase-seconds", env="ORACLE_PHASE_SECONDS",
                type=options.positive_duration, default=120.0, help="length of a scenario phase")
    options.add(parser, "--seed", env="ORACLE_SEED", type=int,
                help="seed for the error and latency dice (default: random)")
    options.add(parser, "--socket", env="ORACLE_METRICS_SOCKET",
                help="the sidecar's socket (default: /var/run/oracle-sidecar/metrics.sock)")
    options.add(parser, "--drain-seconds", env="ORACLE_DRAIN_SECONDS",
                type=options.non_negative_duration, default=0.0,
                help="on SIGTERM, keep answering this long after NOT_SERVING")
    options.add(parser, "--grace-seconds", env="ORACLE_GRACE_SECONDS",
                type=options.non_negative_duration, default=5.0,
                help="on SIGTERM, time given to RPCs in flight")
    options.add(parser, "--log-level", env="LOG_LEVEL", type=options.log_level, default="INFO",
                help="log level")


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Build :class:`Settings` from parsed flags; raises KnobError on a bad combination."""
    faults = Faults(
        error_rate=dict(args.error_rate or []),
        error_code=args.error_code,
        latency=dict(args.latency or []),
        health=args.health,
    ).patched({"failing_check": args.failing_check})
    return Settings(
        host=args.host,
        port=args.port,
        control_port=args.control_port,
        workers=args.workers,
        faults=faults,
        scenario=args.scenario,
        phase_seconds=args.phase_seconds,
        seed=args.seed,
        socket_path=args.socket,
    )


def run(args: argparse.Namespace) -> int:
    """Serve until SIGTERM or SIGINT; returns 0 after a clean stop, 1 when it cannot start."""
    setup_logging("oracle", level=args.log_level)
    try:
        settings = settings_from_args(args)
    except KnobError as err:
        log.error("bad setting: %s", err)
        return 2
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    oracle = DemoOracle(settings)
    try:
        oracle.start()
    except OSError as err:
        log.error("%s", err)
        oracle.stop(grace=0)
        return 1
    if not oracle.monitored:
        log.warning("monitoring is off: the sidecar.reporter package is not importable; "
                    "serving without reports")
    log.info(
        "demo Oracle serving %s on port %d",
        SERVICE, oracle.port,
        extra={"grpc_port": oracle.port,
               "control_url": f"http://127.0.0.1:{oracle.control.port}/knobs"
               if oracle.control else None,
               "monitoring": oracle.monitored,
               "faults": oracle.knobs.faults.to_json(),
               "scenario": list(settings.scenario) or "off"},
    )
    stop.wait()
    oracle.stop(drain=args.drain_seconds, grace=args.grace_seconds)
    log.info("demo Oracle stopped")
    return 0
