"""Log output: plain text by default, one JSON object per line with `STEPLINE_LOG_FORMAT=json`.

A run transition (queued, started, completed, failed, cancelled) logs one line whose `extra`
carries `run_id`, `function`, `status` and, once it ended, `duration_ms`; the JSON formatter
writes those as fields next to `ts`, `level`, `logger` and `message`.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime
from typing import Any

LOGGER = "stepline"
_RESERVED = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys() | {"message", "asctime"}
)


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts, level, logger, message, then every `extra` field."""

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
        if record.exc_info:
            out["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, separators=(",", ":"))


def configure_from_env() -> None:
    """With `STEPLINE_LOG_FORMAT=json`, send the `stepline` loggers' records to stderr as
    JSON lines (once per process; plain text setups are left as they are)."""
    if os.environ.get("STEPLINE_LOG_FORMAT", "").strip().lower() != "json":
        return
    logger = logging.getLogger(LOGGER)
    if any(isinstance(h.formatter, JsonFormatter) for h in logger.handlers):
        return
    handler = logging.StreamHandler(sys.__stderr__)  # not a stderr Celery redirected
    handler.setFormatter(JsonFormatter())
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
