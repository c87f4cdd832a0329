"""Event keys are in the URL path (`POST /e/<key>`): gunicorn's logs must not keep them."""

from __future__ import annotations

import datetime
from pathlib import Path
from types import SimpleNamespace

from gunicorn.config import Config

from app.api.accesslog import AccessLogger, redact


def test_redact() -> None:
    assert redact("POST /e/key-123 HTTP/1.1") == "POST /e/[redacted] HTTP/1.1"
    assert redact("/e/k?x=1") == "/e/[redacted]?x=1"
    assert redact("GET /v1/events/01ABC") == "GET /v1/events/01ABC"
    assert redact("/e/") == "/e/"


def test_gunicorn_logs_keep_no_event_key(tmp_path: Path) -> None:
    access, errors = tmp_path / "access.log", tmp_path / "error.log"
    cfg = Config()
    cfg.set("accesslog", str(access))
    cfg.set("errorlog", str(errors))
    # gunicorn's default format plus every atom that can carry the path.
    cfg.set(
        "access_log_format", '%(h)s "%(r)s" %(s)s "%(f)s" %(U)s %({raw_uri}e)s %({path_info}e)s'
    )
    logger = AccessLogger(cfg)
    environ = {
        "REQUEST_METHOD": "POST",
        "RAW_URI": "/e/live-key-1234",
        "PATH_INFO": "/e/live-key-1234",
        "QUERY_STRING": "",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_REFERER": "http://127.0.0.1:8288/e/live-key-1234",
    }
    response = SimpleNamespace(status="401 UNAUTHORIZED", sent=42, headers=[])
    logger.access(response, [], environ, datetime.timedelta(milliseconds=3))
    logger.error("Error handling request %s", "/e/live-key-1234")
    for handler in [*logger.access_log.handlers, *logger.error_log.handlers]:
        handler.flush()
    written = access.read_text() + errors.read_text()
    assert "live-key-1234" not in written
    assert '"POST /e/[redacted] HTTP/1.1" 401' in written
    assert "Error handling request /e/[redacted]" in written


class _Counting(AccessLogger):  # type: ignore[misc,unused-ignore]
    """The real logger, counting the access lines it builds."""

    built = 0

    def atoms(self, resp: object, req: object, environ: dict[str, object], t: object) -> object:
        _Counting.built += 1
        return super().atoms(resp, req, environ, t)


def test_no_access_line_is_built_when_the_access_log_is_off() -> None:
    from app.logs import gunicorn_logconfig

    environ = {"REQUEST_METHOD": "POST", "RAW_URI": "/e/k", "PATH_INFO": "/e/k"}
    environ |= {"QUERY_STRING": "", "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1"}
    response = SimpleNamespace(status="200 OK", sent=2, headers=[])
    for access, lines in ((False, 0), (True, 1)):
        cfg = Config()
        cfg.set("logconfig_dict", gunicorn_logconfig("text", access=access))
        logger = _Counting(cfg)
        _Counting.built = 0
        logger.access(response, [], environ, datetime.timedelta(milliseconds=1))
        assert _Counting.built == lines
