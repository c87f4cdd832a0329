"""The queue: the only module of `app/` that sends Celery work.

A job is first written to Redis (`Store.enqueue_job`, deterministic id, so enqueueing twice is
harmless), then its id is sent to Celery. Jobs due within `eta_max_seconds` go to Celery at
once (with a countdown); later ones wait in the Redis timer set and are sent by the beat tick
(`release_due`). A job that was sent but never started, or whose worker died mid-run (its lease
expired), is sent again by the same tick: Celery's Redis visibility timeout is never waited on.

Two priorities on each Celery queue (the Redis transport keeps one list per queue and
priority, and a worker takes from the first non-empty one, all its queues' priority-0 lists
before any priority-6 one: `PRIORITY_STEPS`): timers the tick releases (sleeps, wait and
cancel timeouts, debounces, batches: TIMER_KINDS) go ahead of new work, so a burst of new
events never delays a due wake-up. Everything else, resends of jobs that sat unstarted in a
backlog included, goes behind them (a backlog re-sent at the front would bury the timers), and
the tick takes what fell due in the last `RECENT_MS` before such a backlog.
The tick releases in batches until nothing due is left (within `RELEASE_BUDGET_S`), routes a
batch's jobs with one read of their runs' functions (`learn_runs`) and pushes its messages in
one pipelined round trip (`Store.push_messages`, the messages built as `send_task` would);
due timers travel many to a message (`TIMERS_TASK`, up to `WAKE_BATCH` due within
`WAKE_SPREAD_MS` of each other, up to `LATE_WAKE_BATCH` of those already due, or of any due
within the lookahead when the queue is already behind on its timers: `BEHIND`), so a thousand
wakes cost a few dozen Celery messages, not a thousand. Each job in such a message keeps its
own Redis record and lease: one that fails or is lost with its worker is retried or re-sent
alone.

A state change that creates a job can carry its Celery message too (`Queue.message`): the
message is built here, by Celery's and kombu's own code exactly as `send_task` would publish
it (Celery's task message, kombu's Redis transport encoding, delivery tag and priority
list), and the state script that records the job pushes it onto the queue's list in the same
call (lua/ingest_events.lua), so a job and its message are written at once and nothing is
published afterwards. Workers consume such a message as any other (kombu's unacked
bookkeeping starts when a worker takes it, as for every message).

Two Celery queues: jobs that execute runs of SDK apps' functions (HTTP and Connect drivers) go
to `STEPLINE_SDK_QUEUE` (`stepline-sdk`, the Procfile's `sdk-worker`), everything else to
`stepline` (the `worker`): an app that answers slowly holds only the SDK pool, never the
processes that in-process runs, events, timers and flow control need.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Protocol
from urllib.parse import urlsplit

from app.config import Settings
from app.models import Job, JobKind
from app.state.store import BrokerMessage, QueuedJob, Store, server_of

log = logging.getLogger("stepline.queue")

TASK_PREFIX = "stepline."
QUEUE_NAME = "stepline"
"""The queue of every job that does not call an SDK app (the Procfile's `worker`)."""
DUE_PRIORITY = 0
"""Timers the tick releases: taken first (Redis transport: 0 is first)."""
WORK_PRIORITY = 6
"""Everything else: new events, runs' next steps, resends."""
TIMER_KINDS = frozenset(
    {JobKind.SLEEP, JobKind.PAUSE_TIMEOUT, JobKind.CANCEL, JobKind.DEBOUNCE, JobKind.BATCH}
)
"""Jobs that wait for a time: released by the tick at DUE_PRIORITY."""
LOOKAHEAD_MS = 50
"""The tick also releases timers due within this long, sent with their countdown: beat wakes
for the next due timer (`next_release`) this early, so a wake-up waits neither for a tick nor
for the tick's own latency. Short: nothing waits in worker memory longer than this."""
RELEASE_BATCH = 500
RELEASE_BUDGET_S = 0.25
"""One tick releases batches of RELEASE_BATCH until fewer are due, for at most about this long
(then the next tick goes on at once): a flood of resends never holds beat for long."""
RECENT_MS = 5_000
"""Each batch takes what fell due in the last RECENT_MS first, then older entries: timers
falling due now go ahead of a backlog of resends whose deadlines passed long ago."""
PRIORITY_STEPS = [DUE_PRIORITY, 3, WORK_PRIORITY, 9]
"""The Redis transport's priority lists (kombu's default steps, pinned: a message's priority
picks its list, and a worker polls every queue's first list before any second one)."""
TIMERS_TASK = TASK_PREFIX + "timers"
"""The task of a message carrying many due timers' job ids (`Queue._send_timers`)."""
WAKE_BATCH = 16
"""At most this many timers to a message: a batch runs in one worker process, so a large one
would make its last timer late while the other processes idle."""
LATE_WAKE_BATCH = 64
"""Timers already due when released (wakes fall due faster than they are woken: a backlog)
go up to this many to a message, fewer messages for as many wakes (each costs the worker a
delivery, an ack and its round trips), but at least `LATE_SPLIT` messages per release, so
every pool process has one (`late_batch`)."""
LATE_SPLIT = 4
"""A pool of two processes with a prefetch of two (tasks/__init__.py)."""
BEHIND = LATE_SPLIT
"""When at least this many messages of due timers already wait in a queue's list (beyond
those the worker holds: its prefetch is full), the pool is behind: the timers released now
start only after them, so they go as late ones do, up to LATE_WAKE_BATCH to a message and
across the whole lookahead (fewer messages: each costs the worker a delivery, a hand-off to
a pool process and an ack, and that per-message work is what a backlog is short of)."""
WAKE_SPREAD_MS = 20
"""Timers due within this of the first of a message go with it (it is sent for the last one's
due time, so the first may run up to this late, never early)."""
APP_CALL_KINDS = frozenset({JobKind.START, JobKind.EDGE, JobKind.SLEEP, JobKind.PAUSE_TIMEOUT})
"""Jobs that execute a run, calling its function's driver."""


Message = tuple[str, list[Any], str, int]
"""A Celery message to send: (task name, its arguments, queue, countdown ms)."""


def job_args(job: Job) -> list[str]:
    """A job's Celery task arguments: its id, and a start job's function id (`Job.function_id`:
    its worker leases it and starts its run in one script call, `Runner.start`) and, for a
    function with concurrency or throttle, its flow-control values (`Job.limits`, as JSON)."""
    if not job.function_id:
        return [job.id]
    if job.limits is None:
        return [job.id, job.function_id]
    return [job.id, job.function_id, job.limits.model_dump_json()]


def task_name(kind: JobKind) -> str:
    return TASK_PREFIX + kind.value


class Sender(Protocol):
    """What the queue needs of Celery: `celery.Celery.send_task`."""

    def send_task(self, name: str, args: Any = None, **options: Any) -> Any: ...


class _Producer(Protocol):
    def batch(self) -> AbstractContextManager[Any]: ...


class BatchSender(Sender, Protocol):
    """A sender that can pipeline many sends (`celery.Celery` with kombu >= 5.7)."""

    def producer_or_acquire(self, producer: Any = None) -> AbstractContextManager[_Producer]: ...


class Queue:
    def __init__(self, store: Store, sender: Sender, settings: Settings) -> None:
        self._store = store
        self._sender = sender
        self._eta_max_ms = int(settings.eta_max_seconds * 1000)
        self._resend_ms = int(settings.redeliver_seconds * 1000)
        self._sdk_queue = settings.sdk_queue
        self._messages = _MessageBuilder(sender, store)
        self.calls_app: Callable[[str], bool] | None = None
        """Set by `Engine.create`: whether a run's function is served by an SDK app (HTTP or
        Connect). Its jobs go to `settings.sdk_queue`, served by a pool of their own."""
        self.learn_runs: Callable[[Sequence[str]], None] | None = None
        """Set by `Engine.create`: reads `calls_app`'s answers for many runs at once (one
        round trip), before a release routes its jobs."""

    def enqueue(self, job: Job, due_at: int, now: int, *, send: bool = True) -> bool:
        """Schedule `job` to run at `due_at` (ms). Returns False if it already exists.

        With `send=False` the job is only recorded: the caller runs it in this process right
        away (saving a queue hop), and if that process dies the tick sends it later."""
        planned = self.plan(job, due_at, now)
        if not self._store.enqueue_job(job, due_at, planned.send_by):
            return False
        self.written(planned, now, send=send)
        return True

    def plan(self, job: Job, due_at: int, now: int) -> QueuedJob:
        """`job` ready to be written by a state change of its own (e.g. a run's creation and
        its start job in one script); once written, `written` sends it."""
        soon = due_at - now <= self._eta_max_ms
        send_by = max(due_at, now) + self._resend_ms if soon else due_at
        return QueuedJob(job=job, send_by=send_by, due_at=due_at, soon=soon)

    def written(self, planned: QueuedJob, now: int, *, send: bool = True) -> None:
        """A planned job is in Redis: send it to Celery if it is due soon (else the tick
        will). With `send=False` the caller runs it here."""
        if planned.soon and send:
            self._send(planned.job, countdown_ms=max(0, planned.due_at - now))

    def message(self, job: Job, priority: int = WORK_PRIORITY) -> BrokerMessage | None:
        """`job`'s Celery message (due now, at `priority`), for the state script that records
        the job to push with it: the bytes `send_task` would publish, built without
        publishing. None when the sender cannot build it (not a Celery app whose broker is
        the store's Redis): the caller sends the job once it is recorded, as before."""
        return self._messages.build(
            task_name(job.kind), job_args(job), self.queue_of(job), priority
        )

    def resend_deadline(self, now: int) -> int:
        """When the tick should resend a job created now for immediate work."""
        return now + self._resend_ms

    def dispatch(self, job: Job, countdown_ms: int = 0) -> None:
        """Send a job that a state transition already created (e.g. a pause's resume job)."""
        self._send(job, countdown_ms=countdown_ms)

    def release_due(
        self, now: int, limit: int = RELEASE_BATCH, budget_s: float = RELEASE_BUDGET_S
    ) -> int:
        """Send every job whose time has come (timers, lost messages, dead workers' jobs), and
        timers due within LOOKAHEAD_MS with their countdown, so they fire on time. Batches of
        `limit`, each sent as one pipelined publish, until a batch is short or `budget_s`
        has passed (the next tick goes on)."""
        total = 0
        started = time.monotonic()
        while True:
            released = self._store.release_upcoming(
                now, self._resend_ms, limit, LOOKAHEAD_MS, RECENT_MS
            )
            self._learn([job for job, _ in released])
            timers = [(job, max(0, due - now)) for job, due in released if job.kind in TIMER_KINDS]
            others = [
                (job, max(0, due - now)) for job, due in released if job.kind not in TIMER_KINDS
            ]
            self._send_timers(timers)
            self._send_many(others, WORK_PRIORITY)
            total += len(released)
            if len(released) < limit or time.monotonic() - started >= budget_s:
                return total

    def _learn(self, jobs: Sequence[Job]) -> None:
        """Before routing many jobs (`queue_of`), learn whether their runs call SDK apps in
        one round trip, not two per job."""
        if self._sdk_queue == QUEUE_NAME or self.learn_runs is None:
            return
        run_ids = [job.run_id for job in jobs if job.kind in APP_CALL_KINDS and job.run_id]
        if run_ids:
            self.learn_runs(run_ids)

    def _send_timers(self, timers: Sequence[tuple[Job, int]]) -> None:
        """Due timers (job, countdown ms) at DUE_PRIORITY, as few messages as possible: those
        of one queue due within WAKE_SPREAD_MS of each other go together, at most WAKE_BATCH
        to a message, more when already due (`late_batch`) (a TIMERS_TASK the worker runs in
        one loop, each job under its own lease), sent with the countdown of the last of them
        so none runs early. When the queue is behind (`BEHIND` messages of due timers wait
        in it), up to LATE_WAKE_BATCH to a message, across the whole lookahead."""
        groups: dict[str, list[tuple[Job, int]]] = {}
        for job, countdown_ms in sorted(timers, key=lambda pair: pair[1]):
            groups.setdefault(self.queue_of(job), []).append((job, countdown_ms))
        waiting = self._due_waiting(list(groups)) if groups else {}
        messages: list[Message] = []
        for queue, jobs in groups.items():
            behind = waiting.get(queue, 0) >= BEHIND
            late = late_batch(sum(1 for _, countdown_ms in jobs if countdown_ms == 0))
            late, spread = (LATE_WAKE_BATCH, LOOKAHEAD_MS) if behind else (late, WAKE_SPREAD_MS)
            chunk: list[tuple[Job, int]] = []
            for job, countdown_ms in jobs:
                size = late if chunk and (behind or chunk[0][1] == 0) else WAKE_BATCH
                if chunk and (len(chunk) >= size or countdown_ms - chunk[0][1] > spread):
                    messages.append(_timers_message(queue, chunk))
                    chunk = []
                chunk.append((job, countdown_ms))
            if chunk:
                messages.append(_timers_message(queue, chunk))
        self._publish(messages, DUE_PRIORITY)

    def next_release(self) -> int | None:
        """When `release_due` next has something to send (ms; None: nothing waits), so beat
        can tick then (LOOKAHEAD_MS ahead) instead of at a fixed interval."""
        send_by = self._store.next_send_by()
        return None if send_by is None else send_by - LOOKAHEAD_MS

    def names(self) -> list[str]:
        """The Celery queues jobs go to: the main one, and the SDK one when it differs."""
        return [QUEUE_NAME] if self._sdk_queue == QUEUE_NAME else [QUEUE_NAME, self._sdk_queue]

    def backlog(self) -> int | None:
        """Messages waiting in the main Celery queue (all its priority lists), in one
        pipelined read; None when it cannot be read (Redis unreachable)."""
        lengths = self._lengths([_priority_list(QUEUE_NAME, p) for p in PRIORITY_STEPS])
        return None if lengths is None else sum(lengths)

    def _due_waiting(self, queues: Sequence[str]) -> dict[str, int]:
        """Messages waiting in each of these queues' DUE_PRIORITY lists (released timers not
        yet taken by a worker), in one read; {} when it cannot be read."""
        lengths = self._lengths([_priority_list(queue, DUE_PRIORITY) for queue in queues])
        return {} if lengths is None else dict(zip(queues, lengths, strict=True))

    def _lengths(self, lists: Sequence[str]) -> list[int] | None:
        """The lengths of these broker lists, in one pipelined read (`Store.list_lengths`);
        None when Redis cannot be read."""
        try:
            return self._store.list_lengths(lists)
        except Exception:
            log.debug("broker list lengths unknown", exc_info=True)
            return None

    def queue_of(self, job: Job) -> str:
        """The Celery queue `job` is sent to: the SDK queue for a job that executes a run of
        an SDK app's function, else the main one."""
        if (
            self._sdk_queue != QUEUE_NAME
            and job.kind in APP_CALL_KINDS
            and job.run_id
            and self.calls_app is not None
            and self.calls_app(job.run_id)
        ):
            return self._sdk_queue
        return QUEUE_NAME

    def _send(self, job: Job, countdown_ms: int, priority: int = WORK_PRIORITY) -> None:
        options = _options(self.queue_of(job), countdown_ms, priority)
        self._sender.send_task(task_name(job.kind), args=job_args(job), **options)

    def _send_many(self, jobs: Sequence[tuple[Job, int]], priority: int) -> None:
        """Send (job, countdown ms) pairs; one pipelined round trip when the sender can."""
        self._publish(
            [(task_name(job.kind), job_args(job), self.queue_of(job), cd) for job, cd in jobs],
            priority,
        )

    def _publish(self, messages: Sequence[Message], priority: int) -> None:
        """Send (task name, arguments, queue, countdown ms) messages; one pipelined round trip
        when the sender can."""
        if not messages:
            return
        if len(messages) > 1:
            built = [
                self._messages.build(name, args, queue, priority, countdown_ms)
                for name, args, queue, countdown_ms in messages
            ]
            if all(message is not None for message in built):
                # kombu sends a batch one LPUSH at a time when the transport retries on
                # timeouts (ours does): built here, they go in one round trip.
                self._store.push_messages([message for message in built if message is not None])
                return
        acquire = getattr(self._sender, "producer_or_acquire", None)
        if acquire is None or len(messages) == 1:
            for name, args, queue, countdown_ms in messages:
                options = _options(queue, countdown_ms, priority)
                self._sender.send_task(name, args=args, **options)
            return
        sender: BatchSender = self._sender  # type: ignore[assignment]
        with acquire() as producer:
            batch = producer.batch() if hasattr(producer, "batch") else nullcontext()
            with batch:  # kombu >= 5.7: the publishes go out as one pipeline
                for name, args, queue, countdown_ms in messages:
                    sender.send_task(
                        name,
                        args=args,
                        producer=producer,
                        **_options(queue, countdown_ms, priority),
                    )


class _Capture:
    """Takes the place of kombu's Redis publish batch (`kombu.transport.redis.PublishBatch`)
    for one publish: kombu routes and encodes the message as for a real publish, and hands
    the final Redis command (`LPUSH <priority list> <message>`) to `add`, where it is kept
    instead of being sent."""

    def __init__(self) -> None:
        self.commands: list[tuple[str, tuple[Any, ...]]] = []

    def publish(self, channel: Any, message: Any, **kwargs: Any) -> Any:
        return channel.basic_publish(message, _publish_batch=self, **kwargs)

    def add(self, name: str, *args: Any) -> None:
        self.commands.append((name, args))


class _MessageBuilder:
    """Builds Celery messages as `Celery.send_task` publishes them over the Redis transport,
    without publishing: Celery's `create_task_message` and `send_task_message` (routing,
    priority, delivery mode), kombu's `Producer.publish` (serialization, `prepare_message`)
    and its Redis channel (body encoding, delivery tag, the priority list's name), whose last
    step, the LPUSH, is captured (`_Capture`). The Redis transport only (a message pushed by a
    state script must land in the broker's own Redis and database): anything else, or a
    kombu without publish batches, builds nothing and the job is sent as before."""

    def __init__(self, sender: Sender, store: Store) -> None:
        self._app: Any = sender if hasattr(sender, "amqp") else None
        self._store = store
        self._producer: Any = None
        self._sent_event = False
        self._lock = threading.Lock()

    def build(
        self, name: str, args: list[Any], queue: str, priority: int, countdown_ms: int = 0
    ) -> BrokerMessage | None:
        producer = self._producer_for_store()
        if producer is None:
            return None
        from kombu.utils.uuid import uuid

        app = self._app
        capture = _Capture()
        producer._batch_local.current = capture  # this thread's publishes go to `capture`
        try:
            task_id = uuid()
            message = app.amqp.create_task_message(
                task_id,
                name,
                args,
                None,
                reply_to=app.thread_oid,
                create_sent_event=self._sent_event,
                ignore_result=None,
                # what Celery's saferepr writes for job ids (or a list of them) and no
                # kwargs; given, it is not worked out again for every message
                argsrepr=repr(args),
                kwargsrepr="{}",
                countdown=countdown_ms / 1000 if countdown_ms > 0 else None,
            )
            app.amqp.send_task_message(
                producer, name, message, queue=queue, priority=priority, declare=[], retry=False
            )
        finally:
            del producer._batch_local.current
        [(command, (list_key, payload))] = capture.commands
        if command != "lpush":
            raise RuntimeError(f"kombu published a message with {command!r}, not LPUSH")
        return BrokerMessage(str(list_key), str(payload))

    def _producer_for_store(self) -> Any:
        """A producer on a channel of the sender's broker, once per process; None (for good)
        when that broker is not the store's Redis over kombu's Redis transport."""
        if self._producer is not None or self._app is None:
            return self._producer
        with self._lock:
            if self._producer is None and self._app is not None:
                self._producer = self._redis_producer()
                if self._producer is None:
                    self._app = None
        return self._producer

    def _redis_producer(self) -> Any:
        from kombu.transport import redis as kombu_redis

        channel = self._app.connection_for_write().default_channel
        if (
            not isinstance(channel, kombu_redis.Channel)
            or not hasattr(channel, "create_publish_batch")
            or channel.global_keyprefix
            or server_of(channel.client.connection_pool.connection_kwargs) != self._store.server()
        ):
            log.info("job messages are published by Celery (the broker is not the store's Redis)")
            return None
        self._sent_event = bool(self._app.conf.task_send_sent_event)
        return self._app.amqp.Producer(channel, auto_declare=False)


def late_batch(due: int) -> int:
    """How many of `due` timers already due go to one message: WAKE_BATCH, or more when
    there are many, up to LATE_WAKE_BATCH, in at least LATE_SPLIT messages."""
    return max(WAKE_BATCH, min(LATE_WAKE_BATCH, -(-due // LATE_SPLIT)))


def _timers_message(queue: str, chunk: list[tuple[Job, int]]) -> Message:
    """One message for due timers of one queue: a single job goes as its own task."""
    job, last = chunk[0][0], chunk[-1][1]
    if len(chunk) == 1:
        return task_name(job.kind), job_args(job), queue, last
    return TIMERS_TASK, [[job.id for job, _ in chunk]], queue, last


def _priority_list(queue: str, priority: int) -> str:
    """The Redis list of `queue` for one priority step, as kombu's Redis transport names it."""
    return queue if priority == PRIORITY_STEPS[0] else f"{queue}\x06\x16{priority}"


def _options(queue: str, countdown_ms: int, priority: int) -> dict[str, Any]:
    """Celery's send options: every job, sent alone or in a batch, goes to its own queue
    (`Queue.queue_of`) with its priority."""
    options: dict[str, Any] = {"queue": queue, "priority": priority}
    if countdown_ms > 0:
        options["countdown"] = countdown_ms / 1000
    return options


def send_errors() -> tuple[type[Exception], ...]:
    """What sending raises while the broker (Redis) is unreachable, after Celery's own
    publish retries: kombu's OperationalError."""
    from kombu.exceptions import OperationalError

    return (OperationalError,)


def celery_sender(settings: Settings) -> Sender:
    """A Celery client that only sends (API and runner processes need no worker app)."""
    from celery import Celery

    client = Celery("stepline-sender", set_as_current=False)
    client.conf.update(broker_options(settings))
    return client


CERT_REQS = {"required": ssl.CERT_REQUIRED, "optional": ssl.CERT_OPTIONAL, "none": ssl.CERT_NONE}


def broker_options(settings: Settings) -> dict[str, Any]:
    """Celery's broker configuration, for the worker app (`tasks`) and the senders alike:
    `REDIS_URL`, the visibility timeout and, with `rediss://`, the TLS options (Celery refuses
    a `rediss://` broker without them)."""
    timeout = settings.redis_timeout_seconds
    options: dict[str, Any] = {
        "broker_url": settings.redis_url,
        "broker_connection_retry_on_startup": True,
        "broker_connection_retry": True,
        "broker_connection_max_retries": None,  # a process outlives any Redis outage
        "broker_connection_timeout": timeout,
        "broker_transport_options": {
            # Our own leases recover lost work within seconds; this is only a backstop.
            "visibility_timeout": settings.visibility_timeout_seconds,
            # Each queue has a list per priority step; a worker polls all its queues' lists
            # of one step before the next step's (timers ahead of new work: DUE_PRIORITY),
            # and rotates among its queues within a step.
            "priority_steps": PRIORITY_STEPS,
            "queue_order_strategy": "round_robin",
            # A frozen or vanished Redis fails a command instead of hanging it; a dead
            # connection is noticed by keepalive and a periodic check.
            "socket_timeout": timeout,
            "socket_connect_timeout": timeout,
            "socket_keepalive": True,
            "health_check_interval": 10,
            "retry_on_timeout": True,
            # Sending retries a few times over ~1 s, then fails (the API answers 503; beat
            # resends the job from its Redis record on a later tick).
            "max_retries": 3,
            "interval_start": 0,
            "interval_step": 0.3,
            "interval_max": 0.5,
        },
    }
    if urlsplit(settings.redis_url).scheme == "rediss":
        tls: dict[str, Any] = {"ssl_cert_reqs": CERT_REQS[settings.redis_tls_cert_reqs]}
        if settings.redis_tls_ca_file is not None:
            tls["ssl_ca_certs"] = str(settings.redis_tls_ca_file)
        options["broker_use_ssl"] = tls
    return options
