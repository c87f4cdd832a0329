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


RUN = "01M8XJDFQ5VD90RJ3GH9YBQ94K"


def celery_record(logger: str, message: str, context: dict[str, object]) -> logging.LogRecord:
    """A record as Celery logs it: the strategy's "received" line passes its context as
    `extra={"data": ...}` too, the trace's "succeeded" line only as the format's mapping."""
    made = logging.LogRecord(logger, logging.INFO, __file__, 1, message, (context,), None)
    if logger == "celery.worker.strategy":
        made.__dict__["data"] = context
    return made


def test_celery_task_lines_name_the_run_of_their_job() -> None:
    received = celery_record(
        "celery.worker.strategy",
        "Task %(name)s[%(id)s] received",
        {"id": "9e9f", "name": "stepline.start", "args": f"['{RUN}:start']", "kwargs": "{}"},
    )
    line = json.loads(logs.JsonFormatter().format(received))
    assert (line["run_id"], line["job_id"]) == (RUN, f"{RUN}:start")
    succeeded = celery_record(
        "celery.app.trace",
        "Task %(name)s[%(id)s] succeeded in %(runtime)ss: %(return_value)s",
        {
            "id": "9e9f",
            "name": "stepline.edge",
            "args": f"['{RUN}:plan:abc']",
            "kwargs": "{}",
            "runtime": 0.01,
            "return_value": "'done'",
        },
    )
    text = logs.TextFormatter().format(succeeded)
    assert text.endswith(f"job_id={RUN}:plan:abc run_id={RUN}")


def test_celery_event_lines_name_the_event_and_other_tasks_nothing() -> None:
    event = celery_record(
        "celery.app.trace",
        "Task %(name)s[%(id)s] succeeded",
        {"id": "1", "name": "stepline.event", "args": f"['event:{RUN}']"},
    )
    assert logs.celery_job_fields(event) == {"job_id": f"event:{RUN}", "event_id": RUN}
    other = celery_record(
        "celery.app.trace", "Task %(name)s[%(id)s] succeeded", {"name": "x.y", "args": "['a']"}
    )
    assert logs.celery_job_fields(other) == {}
