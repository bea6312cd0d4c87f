"""Plausible requests for each Oracle method, varied by a counter, for the load generator."""

from __future__ import annotations

from collections.abc import Callable

from google.protobuf.message import Message

from sidecar.demo._pb import oracle_pb2 as pb

__all__ = ["make_request"]

_NAMES = ("Ada", "Bahram", "Chen", "Dina", "Elif", "Farid", "Grace", "Hana", "Ivan", "Julia")
_QUESTIONS = (
    "Should I take the new job?",
    "Is this a good week to travel?",
    "Will the launch go well?",
    "Should I call her today?",
    "Is it time to move?",
)
_ACTIVITIES = ("meeting", "launch", "travel", "signing", "exam")


def _date(i: int) -> str:
    return f"{1960 + i % 45}-{1 + i % 12:02d}-{1 + i % 28:02d}"


def _moment(i: int) -> str:
    return f"2026-{1 + i % 12:02d}-{1 + i % 28:02d}T{i % 24:02d}:{i % 60:02d}:00Z"


_FACTORIES: dict[str, Callable[[int], Message]] = {
    "GetReading": lambda i: pb.ReadingRequest(
        birth_date=_date(i), birth_time=f"{i % 24:02d}:{i % 60:02d}", date=_date(i + 7),
        user_id=f"user-{i % 997}",
    ),
    "GetNameReading": lambda i: pb.NameReadingRequest(
        name=_NAMES[i % len(_NAMES)], language=("en", "fa")[i % 2],
    ),
    "GetQuestionSign": lambda i: pb.QuestionSignRequest(
        question=_QUESTIONS[i % len(_QUESTIONS)], asked_at=_moment(i), user_id=f"user-{i % 997}",
    ),
    "GetDailyInsight": lambda i: pb.DailyInsightRequest(birth_date=_date(i), date=_date(i + 3)),
    "SuggestRange": lambda i: pb.SuggestRangeRequest(
        low=1, high=10 + i % 90, count=1 + i % 6, purpose=_ACTIVITIES[i % len(_ACTIVITIES)],
    ),
    "AnalyzeSession": lambda i: pb.AnalyzeSessionRequest(
        session_id=f"session-{i}",
        questions=[_QUESTIONS[(i + k) % len(_QUESTIONS)] for k in range(1 + i % 4)],
        started_at=_moment(i),
    ),
    "GetTimingAlignment": lambda i: pb.TimingAlignmentRequest(
        birth_date=_date(i), planned_at=_moment(i + 1), activity=_ACTIVITIES[i % 5],
    ),
    "HealthCheck": lambda i: pb.HealthCheckRequest(),
}


def make_request(method: str, i: int) -> Message:
    """The ``i``-th request of a run for ``method`` (one of :data:`sidecar.demo.METHODS`)."""
    return _FACTORIES[method](i)
