"""Redis side of execution-time flow control: concurrency slots and throttled starts.

One typed wrapper per `lua/slots_*.lua` script, over the same client and key prefix as the
`Store` (the job keys it shares with the queue come from `Keys`). Times are milliseconds and
always passed in.

    key                                 type    content
    <p>:slots:<constraint>              zset    executing job id -> slot lease expiry (ms)
    <p>:slots-wait:<constraint>         zset    parked job id -> score (created_at - priority)
    <p>:slots:waiting                   set     constraints whose wait list is not empty
    <p>:slots:limits                    hash    constraint -> limit (for the tick's sweep)
    <p>:throttle:<name>                 string  GCRA theoretical arrival time (ms), PX
    <p>:{<run>}:throttle                string  the run's throttled start time (ms), PX

A constraint name is `f:<function id>[:<key hash>]`, `e:<env>[:<key hash>]` or
`a:<account>[:<key hash>]` (built by `app.flow.slots`). A job is parked or deferred in place:
it stays in `<p>:jobs` with owner `parked` / `deferred` / `woken` (see lua/include/slots.lua).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, cast

from app.models import Job
from app.state.keys import Keys, SlotKeys
from app.state.lua_files import LuaScripts
from app.state.store import Store

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

    from redis import Redis

Arg = str | int
AcquireCode = Literal["ok", "wait", "gone"]
ThrottleCode = Literal["now", "later", "gone"]
Constraint = tuple[str, int]
"""(constraint name, limit >= 1)."""


@dataclass(frozen=True)
class Acquired:
    code: AcquireCode
    woken: list[Job]
    """Waiters given a slot on the way: the caller sends them."""


class SlotStore:
    """Verbs over the slot and throttle keys. Build it over a `Store` (`over`) to share its
    client, prefix and Lua directory."""

    NAMES = ("slots_acquire", "slots_release", "slots_renew", "slots_throttle")

    def __init__(
        self,
        client: Redis[str],
        prefix: str = "sl",
        lua_dir: Traversable | None = None,
        *,
        lua: LuaScripts | None = None,
    ):
        self._client = client
        self._keys = Keys(prefix)
        self.keys = SlotKeys(prefix)
        self._lua = lua if lua is not None else LuaScripts(client, lua_dir)
        self._lua.load(self.NAMES)

    @classmethod
    def over(cls, store: Store) -> SlotStore:
        """Over `store`'s client, prefix and script loader."""
        return cls(store._client, store.keys.prefix, lua=store.lua)

    def _job_keys(self) -> list[str]:
        k = self._keys
        return [k.jobs, k.jobs_due, k.job_owners, k.job_leases]

    def _pairs(self, constraints: Sequence[Constraint]) -> tuple[list[str], list[Arg]]:
        keys: list[str] = []
        args: list[Arg] = []
        for name, limit in constraints:
            keys += [self.keys.slots(name), self.keys.waiters(name)]
            args += [name, limit]
        return keys, args

    def acquire(
        self,
        job_id: str,
        constraints: Sequence[Constraint],
        score: int,
        now: int,
        lease_ms: int,
        resend_ms: int,
        park_ms: int,
    ) -> Acquired:
        """Take a slot in every constraint (`ok`), or park the job (`wait`; `gone` if the
        job record vanished). See lua/slots_acquire.lua."""
        pair_keys, pair_args = self._pairs(constraints)
        keys = [*self._job_keys(), self.keys.waiting, self.keys.limits, *pair_keys]
        args: list[Arg] = [job_id, score, now, lease_ms, resend_ms, park_ms, *pair_args]
        code, woken = self._lua.run("slots_acquire", keys, args)
        return Acquired(cast(AcquireCode, code), _jobs(woken))

    def release(
        self,
        job_id: str,
        constraints: Sequence[Constraint],
        now: int,
        lease_ms: int,
        resend_ms: int,
    ) -> list[Job]:
        """Give back `job_id`'s slots ("" gives back none) and wake the waiters that fit;
        returns them for the caller to send."""
        pair_keys, pair_args = self._pairs(constraints)
        keys = [*self._job_keys(), self.keys.waiting, self.keys.limits, *pair_keys]
        args: list[Arg] = [job_id, now, lease_ms, resend_ms, *pair_args]
        return _jobs(self._lua.run("slots_release", keys, args))

    def renew(self, job_id: str, names: Sequence[str], now: int, lease_ms: int) -> int:
        """Extend the job's slot leases; returns how many it still held."""
        keys = [self.keys.slots(name) for name in names]
        return int(self._lua.run("slots_renew", keys, [job_id, now, lease_ms]))

    def waiting(self, limit: int = 200) -> list[Constraint]:
        """Constraints with parked jobs (at most `limit`, any order), with their limits."""
        raw = self._client.srandmember(self.keys.waiting, limit) or []
        names = sorted(str(name) for name in raw)
        if not names:
            return []
        limits = self._client.hmget(self.keys.limits, names)
        return [(name, int(raw or 1)) for name, raw in zip(names, limits, strict=True)]

    def throttle(
        self,
        run_id: str,
        job_id: str,
        name: str,
        now: int,
        interval_ms: int,
        tolerance_ms: int,
        slack_ms: int,
        horizon_ms: int,
        ticket_slack_ms: int,
    ) -> tuple[int, ThrottleCode]:
        """The run's start time under throttle `name`; a later start defers the job. See
        lua/slots_throttle.lua."""
        keys = [self.keys.throttle(name), self.keys.ticket(run_id), *self._job_keys()]
        args: list[Arg] = [
            job_id,
            now,
            interval_ms,
            tolerance_ms,
            slack_ms,
            horizon_ms,
            ticket_slack_ms,
        ]
        start, code = self._lua.run("slots_throttle", keys, args)
        return int(start), cast(ThrottleCode, code)


def _jobs(raw: Sequence[str]) -> list[Job]:
    return [Job.model_validate_json(item) for item in raw]
