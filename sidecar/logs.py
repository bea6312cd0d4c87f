"""Structured JSON logging for the sidecar and for the gRPC process beside it.

One JSON object per line::

    {"timestamp": "2026-11-28T08:00:00.123Z", "level": "INFO", "service": "oracle",
     "logger": "nps.oracle", "message": "served", "rpc_method": "GetReading", "duration_ms": 1.2}

``setup_logging()`` writes to stdout; with ``log_dir`` (or ``ORACLE_LOG_DIR``) it also keeps
rotating files there, one pair per process role: ``<role>.log`` (every level) and
``<role>-error.log`` (ERROR and above), 10 MB x 5, where the role is the service name without
its ``oracle-`` prefix (``sidecar``, ``dashboard``, ``alerter``, ``oracle``). Several processes
of one role (pre-fork workers) may share the files: a rollover happens under a lock file and the
others follow it to the new file. Calling it again replaces its own handlers instead of adding
more.
"""

from __future__ import annotations

import fcntl
import logging
import logging.handlers
import os
import sys
from datetime import UTC, datetime
from typing import Any

from pythonjsonlogger.json import JsonFormatter

__all__ = ["JsonLogFormatter", "SharedRotatingFileHandler", "log_files", "setup_logging"]

_MARK = "_oracle_sidecar_handler"
_MAX_BYTES = 10 * 1024 * 1024
_BACKUPS = 5
# LogRecord attributes that are plumbing, not content; everything else passed in `extra` is kept.
_DROPPED = ("color_message", "taskName")


class JsonLogFormatter(JsonFormatter):
    """python-json-logger with this project's field names and an RFC 3339 UTC timestamp."""

    def __init__(self, service: str) -> None:
        super().__init__(json_ensure_ascii=False)
        self.service = service

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        log_data["timestamp"] = _rfc3339(record.created)
        log_data["level"] = record.levelname
        log_data["service"] = self.service
        log_data["logger"] = record.name
        log_data["message"] = record.getMessage()
        super().add_fields(log_data, record, message_dict)
        for key in _DROPPED:
            log_data.pop(key, None)
        if record.exc_info and "exc_info" in log_data:
            log_data["exception"] = log_data.pop("exc_info")


class _ClientErrors(logging.Filter):
    """aiohttp logs each malformed HTTP request at ERROR with a traceback; the fault is the
    client's. Such a record becomes one DEBUG line, so that a hostile client cannot fill the
    log (or error.log) with tracebacks."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is None or not type(exc).__module__.startswith("aiohttp.http_exceptions"):
            return True
        record.msg = f"{record.getMessage()}: {str(exc)[:200]}"
        record.args = None
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        record.exc_info, record.exc_text = None, None
        return logging.getLogger().isEnabledFor(logging.DEBUG)


class SharedRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """A rotating file that several processes may write: the rollover is done by one of them
    under ``<file>.lock``, and a process whose file was rotated away reopens the new one."""

    def shouldRollover(self, record: logging.LogRecord) -> int:
        if self.stream is not None:
            try:
                moved = os.stat(self.baseFilename).st_ino != os.fstat(self.stream.fileno()).st_ino
            except OSError:
                moved = True
            if moved:  # another process rotated it
                self.stream.close()
                self.stream = self._open()
        return super().shouldRollover(record)

    def doRollover(self) -> None:
        with open(self.baseFilename + ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                try:
                    size = os.path.getsize(self.baseFilename)
                except OSError:
                    size = 0
                if size + 1024 < self.maxBytes:  # another process has just rotated it
                    if self.stream is not None:
                        self.stream.close()
                    self.stream = self._open()
                else:
                    super().doRollover()
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


def log_files(service: str) -> tuple[str, str]:
    """The file names a process of ``service`` writes in the log directory: (all, errors)."""
    role = service.removeprefix("oracle-") or "oracle"
    return f"{role}.log", f"{role}-error.log"


def _rfc3339(created: float) -> str:
    moment = datetime.fromtimestamp(created, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def setup_logging(
    service: str,
    level: str | None = None,
    log_dir: str | None = None,
) -> logging.Logger:
    """Send the root logger's records to stdout as JSON (and to rotating files in ``log_dir``).

    ``level`` defaults to ``LOG_LEVEL`` (INFO); ``log_dir`` to ``ORACLE_LOG_DIR`` (no files).
    Returns the root logger. Safe to call twice: the handlers it added before are replaced.
    """
    level = (level or os.environ.get("LOG_LEVEL") or "INFO").upper()
    if level not in logging.getLevelNamesMapping():
        raise ValueError(f"LOG_LEVEL={level!r} is not a log level (DEBUG, INFO, WARNING, ERROR)")
    log_dir = log_dir if log_dir is not None else os.environ.get("ORACLE_LOG_DIR") or None

    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, _MARK, False)]:
        root.removeHandler(handler)
        handler.close()

    formatter = JsonLogFormatter(service)
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stdout)]
    if log_dir:
        os.makedirs(log_dir, exist_ok=True)
        all_name, error_name = log_files(service)
        everything = SharedRotatingFileHandler(
            os.path.join(log_dir, all_name), maxBytes=_MAX_BYTES, backupCount=_BACKUPS
        )
        errors = SharedRotatingFileHandler(
            os.path.join(log_dir, error_name), maxBytes=_MAX_BYTES, backupCount=_BACKUPS
        )
        errors.setLevel(logging.ERROR)
        handlers += [everything, errors]
    for handler in handlers:
        handler.setFormatter(formatter)
        setattr(handler, _MARK, True)
        root.addHandler(handler)
    root.setLevel(level)
    server = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, _ClientErrors) for f in server.filters):
        server.addFilter(_ClientErrors())
    # aiohttp's access log repeats every probe; keep it for debugging only.
    logging.getLogger("aiohttp.access").setLevel(
        logging.DEBUG if level == "DEBUG" else logging.WARNING
    )
    return root
