"""Handing queued calls to workers: one consumer per app this gateway has workers for.

    <p>:connect:queue:<app>  ──pop (blocking, 1 s)──►  pick a worker  ──claim──►  forward
                                                        │ none left: put the call back

A consumer only pops while one of its app's connections takes calls (ready, not paused, below
its `max_worker_concurrency`), and gives the call to the connection running the fewest, in
turn among equals; so two workers of an app share its load, and several gateways share a queue
(Redis hands each pop to one of them). Calls lost on the way (a gateway dying between pop and
send) are not lost for good: their lease runs out and the executor retries the step.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
import uuid

from app.gateway.connection import WorkerConnection
from app.state.connect import ConnectStore

log = logging.getLogger("stepline.gateway.dispatch")

POP_TIMEOUT_S = 1.0
"""A consumer re-checks its connections at least this often."""


class _Route:
    def __init__(self, app_id: str) -> None:
        self.app_id = app_id
        self.conns: list[WorkerConnection] = []
        self.wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self._turn = itertools.count()

    def pick(self) -> WorkerConnection | None:
        """The accepting connection with the fewest calls in flight (in turn among equals)."""
        open_ = [c for c in self.conns if c.accepting and c.has_capacity]
        if not open_:
            return None
        start = next(self._turn) % len(open_)
        rotated = open_[start:] + open_[:start]
        return min(rotated, key=lambda c: len(c.inflight))


class Dispatcher:
    def __init__(self, connect: ConnectStore, lease_ms: int) -> None:
        self._connect = connect
        self._lease_ms = lease_ms
        self._routes: dict[str, _Route] = {}

    def attach(self, conn: WorkerConnection) -> None:
        for app_id in conn.apps:
            route = self._routes.setdefault(app_id, _Route(app_id))
            route.conns.append(conn)
            if route.task is None or route.task.done():
                route.task = asyncio.create_task(self._consume(route), name=f"dispatch:{app_id}")
        self.changed()

    def detach(self, conn: WorkerConnection) -> None:
        for app_id in conn.apps:
            route = self._routes.get(app_id)
            if route is not None and conn in route.conns:
                route.conns.remove(conn)
        self.changed()

    def changed(self) -> None:
        """A connection started or stopped taking calls, or finished one: wake consumers."""
        for route in self._routes.values():
            route.wake.set()

    async def stop(self) -> None:
        tasks = [r.task for r in self._routes.values() if r.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _consume(self, route: _Route) -> None:
        while route.conns:
            if route.pick() is None:
                route.wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(route.wake.wait(), POP_TIMEOUT_S)
                continue
            try:
                await self._hand_over(route)
            except asyncio.CancelledError:
                raise
            except Exception:  # Redis down, a bug: keep serving, do not spin
                log.exception("dispatch failed app=%s", route.app_id)
                await asyncio.sleep(POP_TIMEOUT_S)
        if self._routes.get(route.app_id) is route:
            del self._routes[route.app_id]

    async def _hand_over(self, route: _Route) -> None:
        request_id = await asyncio.to_thread(
            self._connect.next_request, route.app_id, POP_TIMEOUT_S
        )
        if request_id is None:
            return
        conn = route.pick()
        if conn is None:  # the workers left or filled up while we waited
            await asyncio.to_thread(
                self._connect.requeue, request_id, route.app_id, uuid.uuid4().hex
            )
            return
        now = int(time.time() * 1000)
        claimed = await asyncio.to_thread(
            self._connect.claim, request_id, conn.worker, now, self._lease_ms
        )
        if claimed is None:
            return  # answered, or given up on by its executor
        if not await conn.forward(claimed):
            await asyncio.to_thread(
                self._connect.requeue, request_id, route.app_id, uuid.uuid4().hex
            )
            return
        log.debug("call forwarded request_id=%s worker=%s", request_id, conn.worker)
