# Generated from oracle.proto by `python -m sidecar.demo.regen` with grpcio-tools 1.85.1, grpcio 1.85.3, protobuf 7.36.2.
# Needs at run time: grpcio>=1.85.1, protobuf>=7.35.1,<8. Committed on purpose; regenerate instead of editing.
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class ReadingRequest(_message.Message):
    __slots__ = ("birth_date", "birth_time", "date", "user_id")
    BIRTH_DATE_FIELD_NUMBER: _ClassVar[int]
    BIRTH_TIME_FIELD_NUMBER: _ClassVar[int]
    DATE_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    birth_date: str
    birth_time: str
    date: str
    user_id: str
    def __init__(self, birth_date: _Optional[str] = ..., birth_time: _Optional[str] = ..., date: _Optional[str] = ..., user_id: _Optional[str] = ...) -> None: ...

class ReadingResponse(_message.Message):
    __slots__ = ("life_path", "personal_day", "energy", "summary")
    LIFE_PATH_FIELD_NUMBER: _ClassVar[int]
    PERSONAL_DAY_FIELD_NUMBER: _ClassVar[int]
    ENERGY_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    life_path: int
    personal_day: int
    energy: float
    summary: str
    def __init__(self, life_path: _Optional[int] = ..., personal_day: _Optional[int] = ..., energy: _Optional[float] = ..., summary: _Optional[str] = ...) -> None: ...

class NameReadingRequest(_message.Message):
    __slots__ = ("name", "language")
    NAME_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    name: str
    language: str
    def __init__(self, name: _Optional[str] = ..., language: _Optional[str] = ...) -> None: ...

class NameReadingResponse(_message.Message):
    __slots__ = ("expression", "soul_urge", "summary")
    EXPRESSION_FIELD_NUMBER: _ClassVar[int]
    SOUL_URGE_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    expression: int
    soul_urge: int
    summary: str
    def __init__(self, expression: _Optional[int] = ..., soul_urge: _Optional[int] = ..., summary: _Optional[str] = ...) -> None: ...

class QuestionSignRequest(_message.Message):
    __slots__ = ("question", "asked_at", "user_id")
    QUESTION_FIELD_NUMBER: _ClassVar[int]
    ASKED_AT_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    question: str
    asked_at: str
    user_id: str
    def __init__(self, question: _Optional[str] = ..., asked_at: _Optional[str] = ..., user_id: _Optional[str] = ...) -> None: ...

class QuestionSignResponse(_message.Message):
    __slots__ = ("sign", "confidence", "summary")
    SIGN_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    sign: str
    confidence: float
    summary: str
    def __init__(self, sign: _Optional[str] = ..., confidence: _Optional[float] = ..., summary: _Optional[str] = ...) -> None: ...

class DailyInsightRequest(_message.Message):
    __slots__ = ("birth_date", "date")
    BIRTH_DATE_FIELD_NUMBER: _ClassVar[int]
    DATE_FIELD_NUMBER: _ClassVar[int]
    birth_date: str
    date: str
    def __init__(self, birth_date: _Optional[str] = ..., date: _Optional[str] = ...) -> None: ...

class DailyInsightResponse(_message.Message):
    __slots__ = ("title", "insight", "lucky_numbers")
    TITLE_FIELD_NUMBER: _ClassVar[int]
    INSIGHT_FIELD_NUMBER: _ClassVar[int]
    LUCKY_NUMBERS_FIELD_NUMBER: _ClassVar[int]
    title: str
    insight: str
    lucky_numbers: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, title: _Optional[str] = ..., insight: _Optional[str] = ..., lucky_numbers: _Optional[_Iterable[int]] = ...) -> None: ...

class SuggestRangeRequest(_message.Message):
    __slots__ = ("low", "high", "count", "purpose")
    LOW_FIELD_NUMBER: _ClassVar[int]
    HIGH_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    low: int
    high: int
    count: int
    purpose: str
    def __init__(self, low: _Optional[int] = ..., high: _Optional[int] = ..., count: _Optional[int] = ..., purpose: _Optional[str] = ...) -> None: ...

class SuggestRangeResponse(_message.Message):
    __slots__ = ("numbers", "summary")
    NUMBERS_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    numbers: _containers.RepeatedScalarFieldContainer[int]
    summary: str
    def __init__(self, numbers: _Optional[_Iterable[int]] = ..., summary: _Optional[str] = ...) -> None: ...

class AnalyzeSessionRequest(_message.Message):
    __slots__ = ("session_id", "questions", "started_at")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    QUESTIONS_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    questions: _containers.RepeatedScalarFieldContainer[str]
    started_at: str
    def __init__(self, session_id: _Optional[str] = ..., questions: _Optional[_Iterable[str]] = ..., started_at: _Optional[str] = ...) -> None: ...

class AnalyzeSessionResponse(_message.Message):
    __slots__ = ("question_count", "coherence", "summary", "themes")
    class ThemesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    QUESTION_COUNT_FIELD_NUMBER: _ClassVar[int]
    COHERENCE_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    THEMES_FIELD_NUMBER: _ClassVar[int]
    question_count: int
    coherence: float
    summary: str
    themes: _containers.ScalarMap[str, int]
    def __init__(self, question_count: _Optional[int] = ..., coherence: _Optional[float] = ..., summary: _Optional[str] = ..., themes: _Optional[_Mapping[str, int]] = ...) -> None: ...

class TimingAlignmentRequest(_message.Message):
    __slots__ = ("birth_date", "planned_at", "activity")
    BIRTH_DATE_FIELD_NUMBER: _ClassVar[int]
    PLANNED_AT_FIELD_NUMBER: _ClassVar[int]
    ACTIVITY_FIELD_NUMBER: _ClassVar[int]
    birth_date: str
    planned_at: str
    activity: str
    def __init__(self, birth_date: _Optional[str] = ..., planned_at: _Optional[str] = ..., activity: _Optional[str] = ...) -> None: ...

class TimingAlignmentResponse(_message.Message):
    __slots__ = ("alignment", "best_hour", "summary")
    ALIGNMENT_FIELD_NUMBER: _ClassVar[int]
    BEST_HOUR_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    alignment: float
    best_hour: str
    summary: str
    def __init__(self, alignment: _Optional[float] = ..., best_hour: _Optional[str] = ..., summary: _Optional[str] = ...) -> None: ...

class HealthCheckRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class HealthCheckResponse(_message.Message):
    __slots__ = ("status", "version", "uptime_seconds", "checks")
    class ChecksEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    STATUS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    UPTIME_SECONDS_FIELD_NUMBER: _ClassVar[int]
    CHECKS_FIELD_NUMBER: _ClassVar[int]
    status: str
    version: str
    uptime_seconds: float
    checks: _containers.ScalarMap[str, str]
    def __init__(self, status: _Optional[str] = ..., version: _Optional[str] = ..., uptime_seconds: _Optional[float] = ..., checks: _Optional[_Mapping[str, str]] = ...) -> None: ...
