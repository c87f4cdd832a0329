"""A hung SDK app holds only the SDK worker pool: in-process runs, on the main pool, go on.

Real `celery worker` processes as the Procfile runs them (`worker` on `stepline`,
`sdk-worker` on `stepline-sdk`, one process each) and an HTTP function whose app accepts the
call and never answers.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.models import FunctionConfig, Trigger
from tests.integration.cluster import Cluster


class HungApp:
    """Accepts connections, reads nothing, answers nothing (until closed)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/api/inngest"
        self.accepted: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self.accepted:
            conn.close()


@pytest.fixture
def hung() -> Iterator[HungApp]:
    app = HungApp()
    yield app
    app.close()


def test_a_hung_sdk_app_does_not_delay_in_process_runs(
    redis_url: str, tmp_path: Path, hung: HungApp
) -> None:
    cluster = Cluster(redis_url, tmp_path, concurrency=1)
    hanging = FunctionConfig(
        id="hung-wait",
        name="wait",
        app_id="hung",
        triggers=[Trigger(event="hung/go")],
        driver="http",
        url=f"{hung.url}?fnId=hung-wait&stepId=step",
    )
    cluster.engine.store.save_app("hung", hung.url, [hanging], cluster.engine.now())
    try:
        cluster.start_worker("main", queues="stepline")
        cluster.start_worker("sdk", queues="stepline-sdk")
        stuck = [cluster.send("hung/go", {"n": i}) for i in range(3)]
        # The SDK pool's only process is now waiting on the app (300 s read timeout).
        cluster.wait_for(lambda: len(hung.accepted) >= 1, what="the app to be called")
        event = cluster.send("e2e/steps", {"n": 3})
        run = cluster.run_of(event, timeout=60)
        assert (run.status, run.output) == ("Completed", {"total": 3})
        # ... while the SDK app's runs are still waiting on it.
        for event_id in stuck:
            assert [r.status for r in cluster.runs_of(event_id)] in (["Queued"], ["Running"])
    finally:
        cluster.stop()
