"""Keep event keys out of gunicorn's access log.

Event keys travel in the URL path (`POST /e/<key>`, as the SDKs send them), and gunicorn's
access log writes the request line, the path, the referer and any WSGI environ value a format
names; its error log names the request of a failure. `AccessLogger` (gunicorn's
`logger_class`, set in app/gunicorn_conf.py, which the Procfile and `stepline web|dev` load)
writes both with the key replaced by `[redacted]`; everything else about gunicorn's logging
(format, files, levels) stays as configured. `redact` does the same for any other place that
logs a path.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from gunicorn.glogging import Logger  # type: ignore[import-untyped,unused-ignore]

_EVENT_KEY = re.compile(r"(/e/)[^/?#\s\"]+")
REDACTED = "[redacted]"


def redact(text: str) -> str:
    """`text` with the key of every `/e/<key>` path in it replaced by `[redacted]`."""
    return _EVENT_KEY.sub(r"\g<1>" + REDACTED, text)


class _Redacting(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "/e/" in message:
            record.msg, record.args = redact(message), None
        return True


class AccessLogger(Logger):  # type: ignore[misc,unused-ignore]
    """gunicorn's logger, with event keys redacted from every access-log atom and from the
    error log's messages."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)  # runs again on reload: one filter is enough
        if not any(isinstance(f, _Redacting) for f in self.error_log.filters):
            self.error_log.addFilter(_Redacting())

    def access(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> None:
        """gunicorn builds every atom of a request (and we redact them) before its logger
        decides whether to write the line; with the access log off (STEPLINE_ACCESS_LOG=false:
        `gunicorn.access` above INFO) that was a tenth of the CPU of a one-event `POST /e`
        (bench.events)."""
        if self.access_log.isEnabledFor(logging.INFO):
            super().access(resp, req, environ, request_time)

    def atoms(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> Any:
        atoms = super().atoms(resp, req, environ, request_time)
        return {
            name: redact(value) if isinstance(value, str) else value
            for name, value in atoms.items()
        }
