"""gunicorn's configuration for `web` (`gunicorn -c python:app.gunicorn_conf`), the one place
for it: the Procfile, `stepline web` and `stepline dev` all load it.

    bind      0.0.0.0:$PORT              (`-b` on the command line wins)
    logger    app.api.accesslog.AccessLogger: event keys redacted from request lines
    workers   $WEB_CONCURRENCY, else 2   (`--workers` wins), 8 threads each (gthread)
    logs      error and access logs in STEPLINE_LOG_FORMAT (app.logs); no access log with
              STEPLINE_ACCESS_LOG=false
    start-up  Redis' maxmemory-policy checked once, before any worker forks (app.release)

A bad setting stops gunicorn here, with the variable named, before it forks anything.

Why 2 x 8 threads on a 2-core machine (measured with bench.events, whose keep-alive client
shares the cores): one process per core, and threads enough that requests waiting on Redis
form groups (app.api.group_commit: the requests waiting while one stores share the next
script call and job). 3 x 4 and 2 x 16 accepted fewer single-event requests (about 0.7x and
0.6x of 2 x 8 in the same sitting); the bare-Flask ceiling (bench.bare_web) showed the same
order.
"""

from __future__ import annotations

from typing import Any

from app.config import load_or_exit
from app.errors import SteplineError
from app.logs import gunicorn_logconfig
from app.release import at_start

_settings = load_or_exit()

bind = [f"0.0.0.0:{_settings.port}"]
workers = _settings.web_concurrency
threads = 8
logger_class = "app.api.accesslog.AccessLogger"
logconfig_dict = gunicorn_logconfig(_settings.log_format, _settings.access_log)


def on_starting(server: Any) -> None:
    try:
        at_start(_settings, "web")
    except SteplineError as exc:
        raise SystemExit(f"stepline: {exc}") from None
