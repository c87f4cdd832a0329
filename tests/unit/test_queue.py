"""app/queue.py over a real Celery client and the test Redis: timers the tick releases go into
the Celery queue ahead of new work (resends of unstarted work do not), many timers to a message
and many messages in one pipelined publish."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import pytest
import redis

from app.config import Settings
from app.models import Job, JobKind
from app.queue import (
    BEHIND,
    LATE_WAKE_BATCH,
    LOOKAHEAD_MS,
    QUEUE_NAME,
    RELEASE_BATCH,
    TIMERS_TASK,
    WAKE_BATCH,
    WAKE_SPREAD_MS,
    Queue,
    broker_options,
    celery_sender,
    late_batch,
)
from app.state.store import Store

T0 = 1_700_000_000_000
SEP = "\x06\x16"
DUE_LIST = QUEUE_NAME  # priority 0: the list a worker takes from first
WORK_LIST = f"{QUEUE_NAME}{SEP}6"
SDK_QUEUE = "stepline-sdk"
SDK_DUE_LIST = SDK_QUEUE
SDK_WORK_LIST = f"{SDK_QUEUE}{SEP}6"


@pytest.fixture
def parts(redis_url: str) -> Iterator[tuple[Queue, redis.Redis]]:
    settings = Settings.from_env().replace(redis_url=redis_url)
    store = Store(redis_url, prefix="sl")
    sender = celery_sender(settings)
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield Queue(store, sender, settings), client
    client.close()
    store.close()


def sent(client: redis.Redis, key: str) -> list[tuple[str, str, float | None]]:
    """(task name, job id, countdown eta or None) of each message in a Celery list, oldest
    first (a TIMERS_TASK message: its job ids, comma-separated)."""
    out = []
    for raw in reversed(client.lrange(key, 0, -1)):
        message = json.loads(raw)
        args = json.loads(base64.b64decode(message["body"]))[0]
        task = message["headers"]["task"]
        # A TIMERS_TASK message carries a list of job ids, every other one a single id.
        assert isinstance(args[0], list) == (task == TIMERS_TASK) and len(args) == 1
        ids = ",".join(args[0]) if task == TIMERS_TASK else args[0]
        out.append((task, ids, message["headers"].get("eta")))
    return out


def sleep_job(i: int, run: str = "01R") -> Job:
    return Job(id=f"{run}{i}:sleep:s", kind=JobKind.SLEEP, run_id=f"{run}{i}", step="s")


def test_new_work_goes_behind_what_the_tick_releases(
    parts: tuple[Queue, redis.Redis],
) -> None:
    queue, client = parts
    now = T0
    work = Job(id="event:e1", kind=JobKind.EVENT, event_id="e1")
    assert queue.enqueue(work, now, now)
    timer = sleep_job(0)
    assert queue.enqueue(timer, now + 30_000, now)  # far: waits in Redis, not in Celery
    assert sent(client, WORK_LIST) == [("stepline.event", "event:e1", None)]
    assert client.llen(DUE_LIST) == 0

    assert queue.release_due(now + 30_000) == 1
    assert sent(client, DUE_LIST) == [("stepline.sleep", timer.id, None)]
    assert client.llen(WORK_LIST) == 1  # still there, behind the due timer


def test_the_backlog_counts_the_messages_waiting_in_every_priority_list(
    parts: tuple[Queue, redis.Redis],
) -> None:
    """What a worker reads to decide whether to share its follow-up work (app/worker.py)."""
    queue, client = parts
    assert queue.backlog() == 0
    for n in range(3):
        assert queue.enqueue(Job(id=f"event:e{n}", kind=JobKind.EVENT, event_id=f"e{n}"), T0, T0)
    assert queue.enqueue(sleep_job(0), T0 + 30_000, T0)  # far: waits in Redis
    assert queue.backlog() == 3
    assert queue.release_due(T0 + 30_000) == 1
    assert (client.llen(WORK_LIST), client.llen(DUE_LIST)) == (3, 1)
    assert queue.backlog() == 4


def test_a_burst_of_due_timers_is_released_in_one_tick(
    parts: tuple[Queue, redis.Redis],
) -> None:
    queue, client = parts
    count = RELEASE_BATCH * 2 + 7  # more than one batch
    for i in range(count):
        assert queue.enqueue(sleep_job(i), T0 + 60_000, T0)
    # However slow this machine is, with no time budget one call releases them all.
    assert queue.release_due(T0 + 60_000, budget_s=float("inf")) == count
    messages = sent(client, DUE_LIST)
    ids = [job_id for m in messages for job_id in m[1].split(",")]
    assert sorted(ids) == sorted(sleep_job(i).id for i in range(count))
    # Many timers to a message: as few as `late_batch` allows in each batch the tick releases
    # (all were due already: up to LATE_WAKE_BATCH, at least LATE_SPLIT messages a batch).
    batches = [RELEASE_BATCH, RELEASE_BATCH, 7]
    assert len(messages) == sum(-(-size // late_batch(size)) for size in batches)
    assert max(len(m[1].split(",")) for m in messages) == late_batch(RELEASE_BATCH) > WAKE_BATCH
    assert {m[0] for m in messages} == {TIMERS_TASK}
    # Released once: the next tick sends nothing until the resend deadline.
    assert queue.release_due(T0 + 60_001) == 0


def test_timers_due_before_the_next_tick_are_sent_with_their_countdown(
    parts: tuple[Queue, redis.Redis],
) -> None:
    queue, client = parts
    now = T0 + 60_000
    for i in range(3):
        queue.enqueue(sleep_job(i), now + LOOKAHEAD_MS, T0)
    queue.enqueue(sleep_job(9), now + LOOKAHEAD_MS + 1, T0)  # beat wakes again for it
    assert queue.release_due(now) == 3
    assert [(name, ids) for name, ids, _ in sent(client, DUE_LIST)] == [
        (TIMERS_TASK, ",".join(sleep_job(i).id for i in range(3)))
    ]
    assert all(eta is not None for _, _, eta in sent(client, DUE_LIST))


def test_a_timers_message_is_sent_for_its_last_timer_never_early(
    parts: tuple[Queue, redis.Redis],
) -> None:
    """Timers due further apart than WAKE_SPREAD_MS go in separate messages; a message's
    countdown is its last timer's."""
    queue, client = parts
    now = T0 + 60_000
    dues = [now + 1, now + 1 + WAKE_SPREAD_MS, now + 2 + WAKE_SPREAD_MS * 2]
    assert dues[-1] <= now + LOOKAHEAD_MS
    for i, due in enumerate(dues):
        queue.enqueue(sleep_job(i), due, T0)
    assert queue.release_due(now) == 3
    messages = sent(client, DUE_LIST)
    assert [m[1] for m in messages] == [
        f"{sleep_job(0).id},{sleep_job(1).id}",
        sleep_job(2).id,
    ]
    assert [m[0] for m in messages] == [TIMERS_TASK, "stepline.sleep"]
    etas = [m[2] for m in messages]
    assert all(isinstance(eta, str) for eta in etas)
    assert etas[0] < etas[1]  # type: ignore[operator]


def test_a_queue_behind_on_its_timers_gets_fewer_larger_messages(
    parts: tuple[Queue, redis.Redis],
) -> None:
    """With BEHIND messages of due timers still waiting in the queue, timers due within the
    lookahead go in one message (up to LATE_WAKE_BATCH), not one per WAKE_SPREAD_MS, still
    sent for the last one's due time; once the queue has caught up, the usual split."""
    queue, client = parts
    now = T0 + 60_000
    # BEHIND earlier releases nobody has taken yet: one message each.
    for i in range(BEHIND):
        queue.enqueue(sleep_job(i, "01B"), now - 1_000 * (BEHIND - i), T0)
        assert queue.release_due(now - 1_000 * (BEHIND - i)) == 1
    assert client.llen(DUE_LIST) == BEHIND

    count = LATE_WAKE_BATCH + 3
    dues = [now + 1 + (LOOKAHEAD_MS - 1) * i // (count - 1) for i in range(count)]
    assert dues[-1] - dues[0] > WAKE_SPREAD_MS  # the usual split would cut them up
    for i, due in enumerate(dues):
        queue.enqueue(sleep_job(i), due, T0)
    assert queue.release_due(now) == count
    new = sent(client, DUE_LIST)[BEHIND:]
    assert [m[1].split(",") for m in new] == [
        [sleep_job(i).id for i in range(LATE_WAKE_BATCH)],
        [sleep_job(i).id for i in range(LATE_WAKE_BATCH, count)],
    ]
    etas = [m[2] for m in new]  # each sent for its last timer (countdown): none runs early
    assert all(isinstance(eta, str) for eta in etas)
    assert etas[0] <= etas[1]  # type: ignore[operator]

    # The worker took everything: timers as far apart go in the usual messages again.
    client.delete(DUE_LIST)
    later = now + 10_000
    for i, due in enumerate(dues):
        queue.enqueue(sleep_job(i, "01C"), due - now + later, T0)
    assert queue.release_due(later) == count
    assert len(sent(client, DUE_LIST)) > 2


def test_beat_is_told_when_the_next_job_falls_due(parts: tuple[Queue, redis.Redis]) -> None:
    """`next_release`: the earliest timer or resend deadline, LOOKAHEAD_MS early (beat ticks
    then); None when nothing waits."""
    queue, _ = parts
    assert queue.next_release() is None
    queue.enqueue(sleep_job(0), T0 + 30_000, T0)
    queue.enqueue(sleep_job(1), T0 + 20_000, T0)
    assert queue.next_release() == T0 + 20_000 - LOOKAHEAD_MS
    assert queue.release_due(T0 + 20_000) == 1
    assert queue.next_release() == T0 + 30_000 - LOOKAHEAD_MS


def test_resends_of_unstarted_work_stay_behind_the_timers(
    parts: tuple[Queue, redis.Redis],
) -> None:
    queue, client = parts
    work = Job(id="event:e1", kind=JobKind.EVENT, event_id="e1")
    queue.enqueue(work, T0, T0)  # sent now, then sits unstarted in a backlog
    timer = sleep_job(0)
    queue.enqueue(timer, T0 + 60_000, T0)
    client.delete(WORK_LIST)
    # 60 s later the event job's resend deadline and the timer are due together.
    assert queue.release_due(T0 + 60_000) == 2
    assert sent(client, DUE_LIST) == [("stepline.sleep", timer.id, None)]
    assert sent(client, WORK_LIST) == [("stepline.event", "event:e1", None)]


def test_a_backlog_of_old_resends_does_not_hold_up_a_timer_due_now(
    parts: tuple[Queue, redis.Redis],
) -> None:
    queue, client = parts
    for i in range(3):
        queue.enqueue(Job(id=f"event:e{i}", kind=JobKind.EVENT, event_id=f"e{i}"), T0, T0)
    client.delete(WORK_LIST)  # sent, then stuck unstarted: due for a resend since T0 + 60 s
    timer = sleep_job(0)
    queue.enqueue(timer, T0 + 600_000, T0)
    # Even a tick that can release only one job, once, sends the timer first.
    assert queue.release_due(T0 + 600_000, limit=1, budget_s=0) == 1
    assert sent(client, DUE_LIST) == [("stepline.sleep", timer.id, None)]
    assert client.llen(WORK_LIST) == 0


def test_every_send_goes_to_its_jobs_queue_with_its_priority(
    parts: tuple[Queue, redis.Redis],
) -> None:
    """Runs of SDK apps' functions (`queue_of`) keep both priorities on their own queue, sent
    alone or in a pipelined batch."""
    queue, client = parts
    queue.calls_app = lambda run_id: run_id.startswith("01S")
    edge = Job(id="01S0:edge", kind=JobKind.EDGE, run_id="01S0")
    assert queue.enqueue(edge, T0, T0)  # sent alone, as new work
    assert sent(client, SDK_WORK_LIST) == [("stepline.edge", "01S0:edge", None)]
    for i in range(3):
        assert queue.enqueue(sleep_job(i, "01S"), T0 + 60_000, T0)
        assert queue.enqueue(sleep_job(i), T0 + 60_000, T0)
    assert queue.release_due(T0 + 60_000) == 7  # the timers and the edge job's resend
    assert sent(client, SDK_DUE_LIST) == [
        (TIMERS_TASK, ",".join(sleep_job(i, "01S").id for i in range(3)), None)
    ]
    assert sent(client, DUE_LIST) == [
        (TIMERS_TASK, ",".join(sleep_job(i).id for i in range(3)), None)
    ]
    assert [m[1] for m in sent(client, SDK_WORK_LIST)] == ["01S0:edge", "01S0:edge"]
    assert client.llen(WORK_LIST) == 0


def test_a_worker_on_both_queues_takes_every_due_timer_before_new_work(
    parts: tuple[Queue, redis.Redis], redis_url: str
) -> None:
    """The worker's side of the priorities (`broker_options`' transport options): a consumer
    of both queues, as the cluster's worker is, gets the timers of either queue first."""
    from kombu import Connection
    from kombu import Queue as KombuQueue

    queue, _ = parts
    queue.calls_app = lambda run_id: run_id.startswith("01S")
    for run in ("01S", "01R"):
        assert queue.enqueue(Job(id=f"{run}0:edge", kind=JobKind.EDGE, run_id=f"{run}0"), T0, T0)
        assert queue.enqueue(sleep_job(0, run), T0 + 30_000, T0)
    assert queue.release_due(T0 + 30_000) == 2  # the timers only: the edges are not due
    options = broker_options(Settings.from_env().replace(redis_url=redis_url))
    received: list[str] = []
    with Connection(redis_url, transport_options=options["broker_transport_options"]) as conn:
        queues = [KombuQueue(name, routing_key=name) for name in (QUEUE_NAME, SDK_QUEUE)]

        def take(body: object, message: object) -> None:
            received.append(json.loads(message.body)[0][0])  # type: ignore[attr-defined]
            message.ack()  # type: ignore[attr-defined]

        with conn.Consumer(queues, callbacks=[take], accept=["json"], prefetch_count=1):
            while len(received) < 4:
                conn.drain_events(timeout=5)
    assert sorted(received[:2]) == ["01R0:sleep:s", "01S0:sleep:s"]
    assert sorted(received[2:]) == ["01R0:edge", "01S0:edge"]
