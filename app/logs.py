"""Log output, one format for every process: `STEPLINE_LOG_FORMAT=text` (default) or `json`.

    text   2026-01-02 03:04:05,678 INFO stepline.executor: run completed run_id=... function=...
    json   {"ts": ..., "level": "info", "logger": ..., "message": ..., "run_id": ..., ...}

`formatter(fmt)` is the formatter every handler gets: Stepline's own logger (`configure`), the
Celery worker's and beat's handlers (`tasks/hooks.py`, on Celery's logging signals) and
gunicorn's error and access logs (`app/gunicorn_conf.py`, `gunicorn_logconfig`).

Run ids: a run transition logs `run_id`, `function`, `status` (and `duration_ms` once ended) as
`extra` fields. While a job runs, `bind(run_id=..., job_id=...)` puts them on every line logged
in that context too (the executor's, the driver's, the user's `ctx.logger`, Celery's task
logger): the JSON formatter adds them as fields, the text one appends `run_id=...` when the
message does not already say it.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Literal

LOGGER = "stepline"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LogFormat = Literal["text", "json"]

_RESERVED = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys() | {"message", "asctime"}
)
_context: ContextVar[tuple[tuple[str, str], ...]] = ContextVar("stepline_log", default=())


@contextmanager
def bind(**fields: str | None) -> Iterator[None]:
    """Within this block, every line formatted by Stepline's formatters carries `fields`; an
    empty value unbinds its name (a job of no run, run inline inside a run's job)."""
    merged = {**dict(_context.get()), **fields}
    token = _context.set(tuple((k, v) for k, v in merged.items() if v))
    try:
        yield
    finally:
        _context.reset(token)


_QUOTED = re.compile(r"'([^']+)'")
_ULID = re.compile(r"[0-9A-HJKMNP-TV-Z]{26}")


def celery_job_fields(record: logging.LogRecord) -> dict[str, str]:
    """Celery's own lines about a Stepline task ("Task stepline.start[<uuid>] received",
    "... succeeded in ...") name the Celery task id only; the job id is the task's one
    argument, and a run's job ids start with its run id (`<run_id>:start`, `event:<id>`).
    Returns `job_id` and `run_id` (or `event_id`) for such a record, else nothing."""
    context = record.args if isinstance(record.args, Mapping) else record.__dict__.get("data")
    if not isinstance(context, Mapping) or not str(context.get("name", "")).startswith("stepline."):
        return {}
    quoted = _QUOTED.search(str(context.get("args", "")))
    if quoted is None:
        return {}
    job_id = quoted.group(1)
    fields = {"job_id": job_id}
    head, _, rest = job_id.partition(":")
    if _ULID.fullmatch(head):
        fields["run_id"] = head
    elif head == "event" and _ULID.fullmatch(rest):
        fields["event_id"] = rest
    return fields


def context_fields(record: logging.LogRecord) -> dict[str, str]:
    """The bound fields (and, on Celery's task lines, the job's ids) a record does not
    already carry."""
    fields = {**celery_job_fields(record), **dict(_context.get())}
    return {k: v for k, v in fields.items() if k not in record.__dict__}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts, level, logger, message, then every `extra` field and
    the bound context (`run_id`, `job_id`)."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_"):
                out[key] = value
        out.update(context_fields(record))
        if record.exc_info:
            out["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, separators=(",", ":"))


class TextFormatter(logging.Formatter):
    """`ts LEVEL logger: message`, plus the bound context the message does not already name."""

    def __init__(self, fmt: str | None = None, datefmt: str | None = None, **_: Any) -> None:
        super().__init__(TEXT_FORMAT if fmt is None else fmt, datefmt)

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        extra = [f"{k}={v}" for k, v in context_fields(record).items() if f"{k}=" not in line]
        return " ".join([line, *extra])


def formatter(fmt: LogFormat) -> logging.Formatter:
    return JsonFormatter() if fmt == "json" else TextFormatter()


def use_format(logger: logging.Logger, fmt: LogFormat) -> None:
    """Give every handler of `logger` Stepline's formatter (Celery's logging signals)."""
    for handler in logger.handlers:
        handler.setFormatter(formatter(fmt))


def configure(fmt: LogFormat) -> None:
    """With `json`, send the `stepline` loggers' records to stderr as JSON lines (once per
    process). With `text` they propagate to whatever the process set up (Celery's, gunicorn's
    or the dev console's handlers, each with the text formatter)."""
    if fmt != "json":
        return
    logger = logging.getLogger(LOGGER)
    if any(isinstance(h.formatter, JsonFormatter) for h in logger.handlers):
        return
    handler = logging.StreamHandler(sys.__stderr__)  # not a stderr Celery redirected
    handler.setFormatter(JsonFormatter())
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def write_line(fmt: LogFormat, logger: str, message: str) -> None:
    """One INFO line in `fmt` straight to stderr's file descriptor, taking no lock: safe from
    a signal handler (where a logging handler's lock may already be held)."""
    record = logging.LogRecord(logger, logging.INFO, __file__, 0, message, None, None)
    os.write(2, (formatter(fmt).format(record) + "\n").encode())


def capture_warnings(fmt: LogFormat) -> None:
    """Python warnings (Celery's "running as root", deprecations) as log lines in `fmt`
    rather than raw text on stderr (once per process)."""
    logging.captureWarnings(True)
    logger = logging.getLogger("py.warnings")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.__stderr__)
        handler.setFormatter(formatter(fmt))
        logger.addHandler(handler)
        logger.propagate = False


def gunicorn_logconfig(fmt: LogFormat, access: bool = True) -> dict[str, Any]:
    """gunicorn's `logconfig_dict`: its error and access logs (`access` False: none), and the
    root logger (so Stepline's text lines show in `web` too), on stderr with Stepline's
    formatter."""
    factory = "app.logs.JsonFormatter" if fmt == "json" else "app.logs.TextFormatter"
    handler = {
        "class": "logging.StreamHandler",
        "formatter": "stepline",
        "stream": "ext://sys.stderr",
    }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"stepline": {"()": factory}},
        "handlers": {"stderr": handler},
        "root": {"level": "INFO", "handlers": ["stderr"]},
        "loggers": {
            "gunicorn.error": {"level": "INFO", "handlers": ["stderr"], "propagate": False},
            "gunicorn.access": {
                "level": "INFO" if access else "WARNING",
                "handlers": ["stderr"],
                "propagate": False,
            },
        },
    }
