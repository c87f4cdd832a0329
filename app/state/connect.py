"""Connect state: the hop between executors (Celery workers) and gateways, through Redis.

    executor ─submit─► <p>:connect:queue:<app>  ─next_request/claim─► gateway ─► SDK worker
        ▲                                                                │
        └──wait_reply (BLPOP)── <p>:connect:{<req>}:reply ◄──save_reply──┘ (or POST /flush)

A request is leased: `submit` gives it `lease_ms` to be claimed by a gateway, which restarts
the lease for the worker it picks; the worker renews it (`extend`, every quarter of the lease)
while its step runs. A worker that dies stops renewing, the lease runs out, and the executor
stops waiting and retries the step (never lost). The first reply stored wins, so a late reply
after that retry is ignored. Lease and expiry checks compare `now` passed in: Lua never reads
the clock. Each transition is one script in `lua/connect_*.lua` (contracts in their headers).

Keys (prefix `<p>`):

    <p>:connect:queue:<app id>         list    request ids waiting for a gateway
    <p>:connect:{<request id>}:req     hash    request JSON, app, lease, lease_until,
                                               claimed_by, claimed_at, reply (PX)
    <p>:connect:{<request id>}:reply   list    the reply JSON, for the executor's BLPOP (PX)
    <p>:connect:session:<conn id>      string  {"session_token", "sync_token"} (PX)
    <p>:connect:workers:<app id>       zset    "<instance>/<conn id>" -> last heartbeat, ms
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from app.models import ConnectReply, ConnectRequest
from app.state.store import Store

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

    from redis import Redis

SESSION_TTL_MS = 5 * 60_000
"""A session from `/v0/connect/start` must open its WebSocket within this."""
REQUEST_TTL_MS = 60 * 60_000
"""How long a request (and its reply) is kept: a redelivered executor job finds the reply."""

Arg = str | int


@dataclass(frozen=True)
class ConnectKeys:
    prefix: str = "sl"

    def queue(self, app_id: str) -> str:
        return f"{self.prefix}:connect:queue:{app_id}"

    def request(self, request_id: str) -> str:
        return f"{self.prefix}:connect:{{{request_id}}}:req"

    def replies(self, request_id: str) -> str:
        return f"{self.prefix}:connect:{{{request_id}}}:reply"

    def session(self, connection_id: str) -> str:
        return f"{self.prefix}:connect:session:{connection_id}"

    def workers(self, app_id: str) -> str:
        return f"{self.prefix}:connect:workers:{app_id}"


@dataclass(frozen=True)
class Submitted:
    """What `submit` did: "sent" (queued under our lease), "busy" (another submission's lease
    is live: wait), "replied" (answered already: `reply`)."""

    state: Literal["sent", "busy", "replied"]
    reply: ConnectReply | None = None


@dataclass(frozen=True)
class Claimed:
    request: ConnectRequest
    lease_id: str


@dataclass(frozen=True)
class RequestStatus:
    """A request as the executor sees it while waiting."""

    lease_until: int
    claimed_by: str
    """"<instance id>/<connection id>" of the worker running it, "" while queued."""
    reply: ConnectReply | None


class ConnectStore:
    """Connect verbs over the store's Redis client."""

    NAMES = (
        "connect_submit",
        "connect_claim",
        "connect_extend",
        "connect_reply",
        "connect_requeue",
    )

    def __init__(self, store: Store, lua_dir: Traversable | None = None) -> None:
        self._client: Redis[str] = store._client
        self._keys = ConnectKeys(store.keys.prefix)
        self._lua = store.lua.over(None, lua_dir)
        self._lua.load(self.NAMES)

    @property
    def keys(self) -> ConnectKeys:
        return self._keys

    # --- sessions (POST /v0/connect/start, checked by the gateway) --------------------------
    def open_session(
        self, connection_id: str, session_token: str, sync_token: str, ttl_ms: int
    ) -> None:
        value = json.dumps({"session_token": session_token, "sync_token": sync_token})
        self._client.set(self._keys.session(connection_id), value, px=ttl_ms)

    def take_session(self, connection_id: str) -> tuple[str, str] | None:
        """(session token, sync token) of a started connection, None if unknown, expired or
        already used: a session opens one WebSocket (workers call start again to reconnect)."""
        raw = self._client.getdel(self._keys.session(connection_id))
        if raw is None:
            return None
        data = json.loads(raw)
        return str(data["session_token"]), str(data["sync_token"])

    # --- executor side ----------------------------------------------------------------------
    def submit(self, request: ConnectRequest, lease_id: str, now: int, lease_ms: int) -> Submitted:
        keys = [self._keys.request(request.request_id), self._keys.queue(request.app_id)]
        args: list[Arg] = [
            request.request_id,
            request.model_dump_json(),
            request.app_id,
            lease_id,
            now,
            lease_ms,
            REQUEST_TTL_MS,
        ]
        code, value = self._lua.script("connect_submit")(keys, args)
        if code == "replied":
            return Submitted("replied", ConnectReply.model_validate_json(value))
        return Submitted("busy" if code == "busy" else "sent")

    def wait_reply(self, request_id: str, timeout_s: float) -> ConnectReply | None:
        """Block up to `timeout_s` for the reply (None if none came)."""
        popped = self._client.blpop([self._keys.replies(request_id)], timeout=timeout_s)
        return None if popped is None else ConnectReply.model_validate_json(popped[1])

    def status(self, request_id: str) -> RequestStatus | None:
        """The request's lease and reply; None if it is gone (expired)."""
        raw = self._client.hmget(
            self._keys.request(request_id), ["request", "lease_until", "claimed_by", "reply"]
        )
        if raw[0] is None:
            return None
        reply = ConnectReply.model_validate_json(raw[3]) if raw[3] else None
        return RequestStatus(int(raw[1] or 0), raw[2] or "", reply)

    # --- gateway side -----------------------------------------------------------------------
    def next_request(self, app_id: str, timeout_s: float) -> str | None:
        """Block up to `timeout_s` for the id of a request queued for `app_id`."""
        popped = self._client.blpop([self._keys.queue(app_id)], timeout=timeout_s)
        return None if popped is None else popped[1]

    def claim(self, request_id: str, worker: str, now: int, lease_ms: int) -> Claimed | None:
        """Take a popped request for `worker`; None if it is no longer wanted."""
        found = self._lua.script("connect_claim")(
            [self._keys.request(request_id)], [worker, now, lease_ms]
        )
        if not found:
            return None
        return Claimed(ConnectRequest.model_validate_json(found[0]), str(found[1]))

    def requeue(self, request_id: str, app_id: str, token: str) -> bool:
        keys = [self._keys.request(request_id), self._keys.queue(app_id)]
        return int(self._lua.script("connect_requeue")(keys, [request_id, token])) == 1

    def extend(
        self, request_id: str, lease_id: str, new_lease_id: str, now: int, lease_ms: int
    ) -> str | None:
        """Renew a worker's lease; the new lease id, or None if the lease is lost."""
        renewed = self._lua.script("connect_extend")(
            [self._keys.request(request_id)], [lease_id, new_lease_id, now, lease_ms]
        )
        return str(renewed) if renewed else None

    def save_reply(self, reply: ConnectReply) -> Literal["saved", "duplicate", "unknown"]:
        """Store a worker's reply (over its WebSocket or `POST /v0/connect/flush`)."""
        keys = [self._keys.request(reply.request_id), self._keys.replies(reply.request_id)]
        code = int(
            self._lua.script("connect_reply")(keys, [reply.model_dump_json(), REQUEST_TTL_MS])
        )
        return "saved" if code == 1 else "duplicate" if code == 0 else "unknown"

    # --- which workers serve an app (heartbeats) -------------------------------------------
    def worker_seen(self, app_id: str, worker: str, now: int) -> None:
        self._client.zadd(self._keys.workers(app_id), {worker: now})

    def worker_gone(self, app_id: str, worker: str) -> None:
        self._client.zrem(self._keys.workers(app_id), worker)

    def workers(self, app_id: str, seen_since: int) -> list[str]:
        """Workers of `app_id` that sent a heartbeat at or after `seen_since` (ms)."""
        return list(self._client.zrangebyscore(self._keys.workers(app_id), seen_since, "+inf"))
