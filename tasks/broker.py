"""How Stepline's Celery processes ride out a Redis restart or outage (issue 9, defect 0).

Celery's worker exited on a Redis restart (`Unrecoverable error: AttributeError("'NoneType'
object has no attribute ...")`): its *gossip* bootstep, restarted with the broker connection,
closes a channel whose connection is already gone (kombu's Redis transport; celery/kombu
issue 582 and relatives). Stepline needs none of Celery's cluster chatter: its own heartbeats
say which workers live (app/liveness.py), and leases decide who works on a job. So:

    Worker     gossip, mingle and Celery's event heartbeat are always off, whatever the
               command line says (`celery -A tasks worker` as the Procfile runs it)
    Consumer   reconnects to the broker every `RECONNECT_MAX_SECONDS` at most, forever,
               instead of Celery's 2, 4, 6 ... 30 s backoff that gives up after 100 tries: a
               worker resumes within seconds of Redis returning, even after a long outage;
               and closes the lost connection without letting kombu's Redis transport end
               the worker (`close_lost`)

The broker options themselves (timeouts, keepalive, retries forever) are in
`app.queue.broker_options`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import cached_property
from typing import Any

from celery import Celery
from celery.apps.worker import Worker as CeleryWorker
from celery.worker.consumer import Consumer as CeleryConsumer
from celery.worker.state import maybe_shutdown

log = logging.getLogger("stepline.worker")

RECONNECT_MAX_SECONDS = 1.0
"""The longest wait between two attempts to reach a broker that is down."""


class Worker(CeleryWorker):
    def prepare_args(self, **kwargs: Any) -> Any:
        kwargs.update(without_gossip=True, without_mingle=True, without_heartbeat=True)
        return super().prepare_args(**kwargs)


class Consumer(CeleryConsumer):
    def ensure_connected(self, conn: Any) -> Any:
        def retrying(exc: Exception, interval: float) -> None:
            log.warning("broker unreachable, retrying in %.1f s: %s", interval, exc)

        conn = conn.ensure_connection(
            retrying,
            None,  # forever: a worker outlives any outage
            interval_start=0.2,
            interval_step=0.4,
            interval_max=RECONNECT_MAX_SECONDS,
            callback=maybe_shutdown,
        )
        self.first_connection_attempt = False
        self.broker_connection_retry_attempt = 0
        return conn

    def on_connection_error_after_connected(self, exc: Exception) -> None:
        # Celery closes the lost connection here, ignoring only the transport's connection
        # errors; the close must not raise anything else (see `close_lost`).
        if self.connection is not None:
            self.connection.close = close_lost(self.connection.close)  # type: ignore[method-assign]
        super().on_connection_error_after_connected(exc)


def close_lost(close: Callable[[], None]) -> Callable[[], None]:
    """`close` of a kombu connection to a Redis that went away, made unable to end the worker.

    Celery first collects the lost connection, which closes its transport and forgets the
    connection's URL; when Redis died while a BRPOP was in flight, the channel is left open.
    Closing the connection then closes that channel, which hands the messages this worker
    holds unacknowledged back to the queue through a new Redis client built from the URL
    that is gone: kombu raises `AttributeError` ('NoneType' object has no attribute
    'hostname'), Celery's cleanup lets it through, and the worker stops with "Unrecoverable
    error" (seen in the chaos suite: a Redis kill -9 under load left every accepted event
    unprocessed). Nothing is lost by swallowing it: the unacknowledged messages stay in
    kombu's unacked index and come back after the visibility timeout, and the jobs they
    carry are Stepline's, sent again by beat when their lease or delivery lapses."""

    def closing() -> None:
        try:
            close()
        except AttributeError as exc:
            log.warning("lost broker connection closed with its messages left unacked: %r", exc)

    return closing


class SteplineCelery(Celery):
    """The worker app: `celery -A tasks worker` builds `Worker` above."""

    @cached_property
    def Worker(self) -> Any:
        return self.subclass_with_self(Worker)
