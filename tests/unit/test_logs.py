"""app/logs.py: the text and JSON formatters every process uses, and run ids bound to the
lines logged while a job runs."""

from __future__ import annotations

import json
import logging

from app import logs


def record(message: str = "step done", **extra: object) -> logging.LogRecord:
    made = logging.LogRecord("stepline.executor", logging.INFO, __file__, 1, message, (), None)
    made.__dict__.update(extra)
    return made


def test_json_lines_carry_the_bound_run_and_job() -> None:
    formatter = logs.JsonFormatter()
    with logs.bind(run_id="01RUN", job_id="01RUN:start"):
        line = json.loads(formatter.format(record()))
    assert line["run_id"] == "01RUN" and line["job_id"] == "01RUN:start"
    assert (line["level"], line["logger"], line["message"]) == (
        "info",
        "stepline.executor",
        "step done",
    )
    assert "run_id" not in json.loads(formatter.format(record()))  # unbound after the block


def test_a_record_s_own_fields_win_over_the_bound_ones() -> None:
    with logs.bind(run_id="01OUTER"):
        line = json.loads(logs.JsonFormatter().format(record(run_id="01CHILD")))
    assert line["run_id"] == "01CHILD"


def test_an_inline_job_of_no_run_unbinds_the_run() -> None:
    with logs.bind(run_id="01RUN", job_id="01RUN:start"), logs.bind(run_id="", job_id="event:1"):
        line = json.loads(logs.JsonFormatter().format(record()))
    assert "run_id" not in line and line["job_id"] == "event:1"


def test_text_lines_name_the_run_unless_the_message_already_does() -> None:
    formatter = logs.TextFormatter()
    with logs.bind(run_id="01RUN"):
        plain = formatter.format(record("greeting ready"))
        named = formatter.format(record("run completed run_id=01RUN function=f"))
    assert plain.endswith("INFO stepline.executor: greeting ready run_id=01RUN")
    assert named.endswith("run completed run_id=01RUN function=f")


def test_gunicorn_gets_the_same_formatter() -> None:
    config = logs.gunicorn_logconfig("json")
    assert config["formatters"]["stepline"]["()"] == "app.logs.JsonFormatter"
    assert config["loggers"]["gunicorn.access"]["handlers"] == ["stderr"]
    assert config["loggers"]["gunicorn.access"]["level"] == "INFO"
    assert logs.gunicorn_logconfig("json", access=False)["loggers"]["gunicorn.access"]["level"] == (
        "WARNING"
    )
    assert logs.gunicorn_logconfig("text")["formatters"]["stepline"]["()"] == (
        "app.logs.TextFormatter"
    )
