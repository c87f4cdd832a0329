"""An API over a real Redis; Celery's broker hop is replaced by a recorder of `send_task`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app.api import create_app
from app.config import Settings
from app.engine import Engine
from app.functions import FunctionSet
from app.models import FunctionConfig, Trigger

PREFIX = "apitest"


@dataclass
class Recorder:
    sent: list[tuple[str, list[str]]] = field(default_factory=list)

    def send_task(self, name: str, args: Any = None, **options: Any) -> None:
        self.sent.append((name, list(args or [])))

    def job_ids(self, task: str) -> list[str]:
        return [args[0] for name, args in self.sent if name == task]


@dataclass
class Api:
    engine: Engine
    app: Flask
    client: FlaskClient
    sender: Recorder

    def register(self, *functions: FunctionConfig, app_id: str = "app") -> None:
        self.engine.store.save_app(app_id, None, list(functions), self.engine.now())

    def process_events(self) -> int:
        """Run every queued event job once, as a worker would (in order, each once); returns
        how many jobs ran (a job processes every event of its request)."""
        done = 0
        seen: set[str] = set()
        while True:
            pending = [j for j in self.sender.job_ids("stepline.event") if j not in seen]
            if not pending:
                return done
            for job_id in pending:
                seen.add(job_id)
                outcome = self.engine.jobs.handle(job_id)
                assert outcome in ("done", "gone")  # gone: a previous call ran it
                done += outcome == "done"


def make_api(redis_url: str, **settings: Any) -> Api:
    sender = Recorder()
    engine = Engine.create(
        Settings(redis_url=redis_url, key_prefix=PREFIX, **settings),
        sender=sender,
        local=FunctionSet(),
    )
    app = create_app(engine)
    app.testing = True
    return Api(engine, app, app.test_client(), sender)


@pytest.fixture
def api(redis_url: str, tmp_path: Path) -> Iterator[Api]:
    made = make_api(redis_url, history_url=f"sqlite:///{tmp_path / 'history.db'}")
    yield made
    close(made)


@pytest.fixture
def api_factory(redis_url: str, tmp_path: Path) -> Iterator[Callable[..., Api]]:
    made: list[Api] = []

    def factory(**settings: Any) -> Api:
        settings.setdefault("history_url", f"sqlite:///{tmp_path / 'history.db'}")
        made.append(make_api(settings.pop("redis_url", redis_url), **settings))
        return made[-1]

    yield factory
    for item in made:
        close(item)


def close(api: Api) -> None:
    api.engine.store.close()
    api.engine.archiver.history.close()


def fn(slug: str, *triggers: Trigger) -> FunctionConfig:
    return FunctionConfig(id=f"app-{slug}", name=slug, app_id="app", triggers=list(triggers))
