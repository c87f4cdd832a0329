"""The fuzzing suite's home: its Hypothesis settings and the API it attacks.

CI runs a fixed, derandomized set of examples (profile `stepline-ci`: the same inputs on
every run, no example database). For more, with a random seed each run:

    STEPLINE_FUZZ_EXAMPLES=5000 .venv/bin/pytest tests/fuzz

(a failure prints the `@reproduce_failure` line that replays it).

`Target` is the Flask app over the real test Redis (Celery's broker hop recorded, as in
`tests/api`), with functions registered whose triggers, flow-control keys and cancel
clauses evaluate CEL over whatever events the API accepts; `Target.process` runs the event
jobs the accepted events queued, as a worker would.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

from hypothesis import HealthCheck, settings

from app import expressions
from app.models import FunctionConfig, Trigger
from tests.api.conftest import PREFIX, Api, make_api
from tests.conftest import REDIS_URL, require_redis

expressions.compile_expression("true")  # celpy raises the recursion limit once: before any test

EXAMPLES = int(os.environ.get("STEPLINE_FUZZ_EXAMPLES", "0") or 0)
"""Examples per test on demand (0: the CI counts, derandomized)."""
TIMEOUT_S = 300 + EXAMPLES
"""A fuzz test that runs longer hangs somewhere (pytest-timeout fails it)."""

settings.register_profile(
    "stepline-ci",
    derandomize=True,
    database=None,
    deadline=None,  # a shared machine: time is checked by pytest-timeout, not per example
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "stepline-more",
    parent=settings.get_profile("stepline-ci"),
    derandomize=False,
    max_examples=max(EXAMPLES, 1),
)
settings.load_profile("stepline-more" if EXAMPLES else "stepline-ci")


def examples(ci_count: int) -> settings:
    """This test's example count: `ci_count` in CI, `STEPLINE_FUZZ_EXAMPLES` on demand."""
    return settings(max_examples=EXAMPLES or ci_count)


KEY = "event.data.k"
FUNCTIONS = [
    FunctionConfig(
        id="fuzz-expr",
        name="expr",
        app_id="fuzz",
        triggers=[
            Trigger(event="fuzz/*", expression="event.data.n > 10 || event.data.s == 'x'"),
            Trigger(event="fuzz/*", expression="has(event.data.k) && event.user.id != 1"),
        ],
    ),
    FunctionConfig(
        id="fuzz-keys",
        name="keys",
        app_id="fuzz",
        triggers=[Trigger(event="fuzz/*")],
        options={
            "rateLimit": {"limit": 1000, "period": "1m", "key": KEY},
            "idempotency": "event.data.id",
            "singleton": {"mode": "cancel", "key": KEY},
            "cancel": [{"event": "fuzz/stop", "if": "async.data.k == event.data.k"}],
            "timeouts": {"start": "1m"},
        },
    ),
    FunctionConfig(
        id="fuzz-debounce",
        name="debounce",
        app_id="fuzz",
        triggers=[Trigger(event="fuzz/a")],
        options={"debounce": {"period": "1s", "key": KEY}},
    ),
    FunctionConfig(
        id="fuzz-batch",
        name="batch",
        app_id="fuzz",
        triggers=[Trigger(event="fuzz/b")],
        options={
            "batchEvents": {"maxSize": 3, "timeout": "1s", "key": KEY, "if": "event.data.n != 0"}
        },
    ),
]


@dataclass
class Target:
    api: Api
    done: int = 0
    """How many of the recorded `stepline.event` jobs have been run."""

    def process(self) -> int:
        """Run the event jobs queued since the last call, in order, once each."""
        jobs = self.api.sender.job_ids("stepline.event")
        for job_id in jobs[self.done :]:
            self.api.engine.runner.process_event(
                job_id.removeprefix("event:"), self.api.engine.now()
            )
        ran, self.done = len(jobs) - self.done, len(jobs)
        return ran


def target() -> Iterator[Target]:
    """A fresh target over a flushed test database (the fixture's body)."""
    client = require_redis()
    client.flushdb()
    api = make_api(REDIS_URL)
    api.register(*FUNCTIONS, app_id="fuzz")
    try:
        yield Target(api)
    finally:
        api.engine.store.close()
        client.flushdb()
        client.close()


__all__ = ["EXAMPLES", "FUNCTIONS", "PREFIX", "TIMEOUT_S", "Target", "examples", "target"]
