"""app/metrics.py and app/logs.py without Redis: bucket choice, histogram rendering from the
stored (non-cumulative) form, and the JSON log lines of run transitions."""

from __future__ import annotations

import io
import json
import logging

import pytest
from prometheus_client.parser import text_string_to_metric_families

from app import logs, metrics


class FakeStore:
    """The three store verbs the collector reads, from dicts."""

    def __init__(self, raw: dict[str, dict[str, str]]) -> None:
        self.raw = raw

    def read_metrics(self, names: list[str]) -> dict[str, dict[str, str]]:
        return {name: self.raw.get(name, {}) for name in names}

    def queue_gauges(self, now: int) -> dict[str, int]:
        return {"jobs": 4, "due": 1, "scheduled": 3, "pauses": 2}


@pytest.mark.parametrize(
    ("seconds", "bucket"),
    [
        (0.0, "0.005"),
        (0.005, "0.005"),
        (0.0051, "0.01"),
        (1.0, "1.0"),
        (299.9, "300.0"),
        (301.0, "+Inf"),
    ],
)
def test_bucket_for(seconds: float, bucket: str) -> None:
    assert metrics.bucket_for(seconds) == bucket


def test_render_cumulates_buckets_and_labels_by_function() -> None:
    store = FakeStore(
        {
            "runs_completed_total": {"app-a": "3", "app-b": "1"},
            "events_received_total": {"": "7"},
            "step_duration_seconds": {
                "app-a|0.01": "2",
                "app-a|1.0": "1",
                "app-a|+Inf": "1",
                "app-a|count": "4",
                "app-a|sum": "400.5",
            },
        }
    )
    text = metrics.render_source(store, 0).decode()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert samples[("stepline_runs_completed_total", (("function", "app-a"),))] == 3
    assert samples[("stepline_events_received_total", ())] == 7
    a = ("function", "app-a")
    assert samples[("stepline_step_duration_seconds_bucket", (a, ("le", "0.005")))] == 0
    assert samples[("stepline_step_duration_seconds_bucket", (a, ("le", "0.01")))] == 2
    assert samples[("stepline_step_duration_seconds_bucket", (a, ("le", "5.0")))] == 3
    assert samples[("stepline_step_duration_seconds_bucket", (a, ("le", "+Inf")))] == 4
    assert samples[("stepline_step_duration_seconds_count", (a,))] == 4
    assert samples[("stepline_step_duration_seconds_sum", (a,))] == 400.5
    assert samples[("stepline_queue_jobs", ())] == 4
    assert samples[("stepline_timers_pending", ())] == 3
    assert samples[("stepline_pauses_pending", ())] == 2
    assert "# TYPE stepline_runs_failed_total counter" in text


def test_json_log_line_carries_the_run_fields() -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logs.JsonFormatter())
    logger = logging.getLogger("stepline.test-json")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        logger.info(
            "run completed run_id=%s",
            "01R",
            extra={"run_id": "01R", "function": "app-f", "status": "Completed", "duration_ms": 12},
        )
    finally:
        logger.removeHandler(handler)
    line = json.loads(out.getvalue())
    assert line["message"] == "run completed run_id=01R"
    assert line["level"] == "info" and line["logger"] == "stepline.test-json"
    assert (line["run_id"], line["function"], line["status"], line["duration_ms"]) == (
        "01R",
        "app-f",
        "Completed",
        12,
    )
    assert line["ts"].endswith("+00:00")


def test_configure_adds_a_handler_only_in_json_mode() -> None:
    logger = logging.getLogger(logs.LOGGER)
    before = list(logger.handlers)
    logs.configure("text")
    assert logger.handlers == before
    propagate, level = logger.propagate, logger.level
    try:
        logs.configure("json")
        logs.configure("json")  # once per process
        added = [h for h in logger.handlers if h not in before]
        assert len(added) == 1 and isinstance(added[0].formatter, logs.JsonFormatter)
    finally:
        for handler in logger.handlers[:]:
            if handler not in before:
                logger.removeHandler(handler)
        logger.propagate, logger.level = propagate, level
