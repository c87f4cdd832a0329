"""Flow control at execution time: concurrency, throttle and priority (ENGINE.md 6.1, 6.2, 6.7).

    runner creates a run ─► start_limits(fn, event, created_at): its start job carries the
                            constraint names, throttle name and score (`Job.limits`); the
                            first run a task keeps: lua/create_run.lua creates, admits and
                            starts it in one call (`Slots.admit`, `admitted`)
    worker takes the start job ─► Slots.admit ─► lua/start_run.lua: lease + admit + start in
                            one call; a slot granted there is the executor's (`acquire`)
    a limited run's sleep wakes ─► its job carries the run's constraints and score
                            (`wake_limits`): the wake's MULTI takes its slots or parks it
                            (`wake_acquire`, `woke`); `acquire` takes that answer
    executor.execute(job) ─► Slots.acquire(fn, run, job, now)
        no `concurrency`/`throttle` ─► NO_GRANT (not one Redis call)
        `throttle`, start job ──────► start time later: job deferred to it, raise Parked
        `concurrency` ──────────────► a slot in every constraint: Grant
                                      a constraint full: job parked in its wait list, Parked
    ... steps execute ... ─► the job's suspend or its run's end gives the slots back and
                            wakes the next waiters in its own call (`handoff`, `released`,
                            `settled`); else Grant.release() ─► lua/slots_release.lua

Concurrency counts executing jobs, not runs: a run holds a slot only while a job of it runs
steps, never while it sleeps or waits. Waiters start in score order, score = run created_at
- priority seconds * 1000, per constraint (a key's value is its own wait list, so a busy key
never holds up another). A parked or deferred job stays a queued job in Redis, never in
Celery or in memory: whoever frees a slot sends the next waiter; `tick` (beat) wakes waiters
whose slot holders died (slot leases expire unless renewed by the `SlotKeeper`); and the
job's own send-by time is a last safety net.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from app.config import Settings
from app.durations import parse_duration_ms
from app.errors import BadRequest
from app.expressions import canonical_json, value_of
from app.models import JSON, FunctionConfig, Job, JobKind, StartLimits
from app.queue import Queue
from app.state.records import SlotAcquire, SlotRelease
from app.state.runs import RunStart
from app.state.scripts import StartAdmit
from app.state.slots import Constraint, SlotStore
from app.state.store import RunState, Store

log = logging.getLogger("stepline.flow")

MAX_CONCURRENCY_CONSTRAINTS = 2
PRIORITY_MAX_SECONDS = 43_200
"""Priority factors are clamped to ±12 h, as Inngest's code clamps them (its spec says
±600 s; compatibility with the code wins)."""
PARK_RECHECK_MS = 300_000
"""A parked job is sent again after this even if nobody woke it (a last safety net: slot
releases and the tick's sweep wake it long before)."""
TICKET_SLACK_MS = 3_600_000
"""A run's throttle ticket outlives its start time by this (redeliveries reuse it)."""
SCOPE_PREFIX = {"fn": "f", "env": "e", "account": "a"}
ENV_ID = "env"
ACCOUNT_ID = "account"
"""Stepline has one environment in one account; their ids in constraint names."""


class Parked(Exception):
    """The job waits for a concurrency slot or its throttled start time: it is not done.
    The job runner leaves it queued (it is woken and sent again later)."""


# --- options ---------------------------------------------------------------------------------


Scope = Literal["fn", "env", "account"]


@dataclass(frozen=True)
class ConcurrencyRule:
    limit: int
    key: str | None = None
    scope: Scope = "fn"


@dataclass(frozen=True)
class ThrottleRule:
    limit: int
    period_ms: int
    burst: int = 0
    key: str | None = None

    @property
    def interval_ms(self) -> int:
        """GCRA emission interval: one start per period / limit."""
        return max(1, self.period_ms // self.limit)

    @property
    def tolerance_ms(self) -> int:
        """Limit + burst starts may go back to back when idle (Inngest's maxBurst)."""
        return (self.limit + self.burst - 1) * self.interval_ms


@dataclass(frozen=True)
class FlowRules:
    concurrency: tuple[ConcurrencyRule, ...] = ()
    throttle: ThrottleRule | None = None
    priority: str | None = None


def has_rules(options: Mapping[str, JSON]) -> bool:
    """Does a function with these options need a slot or a throttle check at all?"""
    return "concurrency" in options or "throttle" in options


def rules_of(options: Mapping[str, JSON]) -> FlowRules:
    """The execution-side rules of registered options (`concurrency`, `throttle`,
    `priority`, PROTOCOL.md 3.2). Unusable entries are ignored: a concurrency limit below 1
    means no limit; a throttle limit below 1 counts as 1 and its burst defaults to 0."""
    concurrency: list[ConcurrencyRule] = []
    raw = options.get("concurrency")
    for item in raw if isinstance(raw, list) else [raw] if isinstance(raw, dict) else []:
        if not isinstance(item, dict):
            continue
        limit = _int(item.get("limit"))
        if limit is None or limit < 1:
            continue
        scope: Scope = "fn"
        if item.get("scope") in ("env", "account"):
            scope = "env" if item.get("scope") == "env" else "account"
        concurrency.append(ConcurrencyRule(limit, _str(item.get("key")), scope))
    throttle: ThrottleRule | None = None
    spec = options.get("throttle")
    if isinstance(spec, dict):
        period_ms = _period_ms(spec.get("period"))
        if period_ms:
            limit = max(1, _int(spec.get("limit")) or 1)
            burst = max(0, _int(spec.get("burst")) or 0)
            throttle = ThrottleRule(limit, period_ms, burst, _str(spec.get("key")))
    priority = options.get("priority")
    run_expr = _str(priority.get("run")) if isinstance(priority, dict) else None
    return FlowRules(tuple(concurrency[:MAX_CONCURRENCY_CONSTRAINTS]), throttle, run_expr)


def constraint_name(rule: ConcurrencyRule, function_id: str, event: dict[str, JSON]) -> str:
    """`<f|e|a>:<scope id>[:<hash of the key's value>]`: one slot set and wait list each."""
    scope_id = {"fn": function_id, "env": ENV_ID, "account": ACCOUNT_ID}[rule.scope]
    base = f"{SCOPE_PREFIX[rule.scope]}:{scope_id}"
    return base if rule.key is None else f"{base}:{key_hash(rule.key, event)}"


def constraints_of(rules: FlowRules, function_id: str, event: dict[str, JSON]) -> list[Constraint]:
    """The run's concurrency constraints (name, limit): one per distinct name, at the lowest
    limit given it."""
    limits: dict[str, int] = {}
    for rule in rules.concurrency:
        name = constraint_name(rule, function_id, event)
        limits[name] = min(rule.limit, limits.get(name, rule.limit))
    return list(limits.items())


def throttle_name(rule: ThrottleRule, function_id: str, event: dict[str, JSON]) -> str:
    """`<function id>[:<hash of the key's value>]`: one GCRA state each."""
    return function_id if rule.key is None else f"{function_id}:{key_hash(rule.key, event)}"


def rules_digest(options: Mapping[str, JSON]) -> str:
    """A short digest of the options `StartLimits` are computed from (`concurrency`,
    `throttle`, `priority`): a job carrying another digest was made under other rules."""
    spec = {name: options.get(name) for name in ("concurrency", "throttle", "priority")}
    return hashlib.blake2b(canonical_json(spec).encode("utf-8"), digest_size=8).hexdigest()


def start_limits(
    fn: FunctionConfig, event: dict[str, JSON], created_at: int, *, throttled: bool = True
) -> StartLimits | None:
    """What the start job of `fn`'s run (first event `event`, created at `created_at`) carries
    so that its worker admits and starts it in one call (`Job.limits`): its constraints,
    throttle and score, evaluated here, once. None for a function without concurrency or
    throttle. `throttled=False` leaves the throttle out (a wake's: a throttle is a start's)."""
    if not has_rules(fn.options):
        return None
    rules = rules_of(fn.options)
    throttle = rules.throttle if throttled else None
    return StartLimits(
        rules=rules_digest(fn.options),
        score=created_at - priority_factor(rules.priority, event) * 1000,
        constraints=constraints_of(rules, fn.id, event),
        throttle="" if throttle is None else throttle_name(throttle, fn.id, event),
    )


def key_hash(expr: str, event: dict[str, JSON]) -> str:
    """A short hash of `expr`'s value over `event` (strings hash as themselves, other values
    as canonical JSON); an expression that fails hashes as `<invalid>`."""
    value = evaluate_value(expr, event)
    text = "<invalid>" if value is _INVALID else value if isinstance(value, str) else None
    if text is None:
        text = canonical_json(value)
    return hashlib.blake2b(text.encode("utf-8"), digest_size=8).hexdigest()


def priority_factor(expr: str | None, event: dict[str, JSON]) -> int:
    """Seconds a run moves ahead (positive) or back: an integer, clamped to ±12 h; any other
    value or an error counts as 0."""
    if not expr:
        return 0
    value = evaluate_value(expr, event)
    if not isinstance(value, int) or isinstance(value, bool):
        return 0  # bool is an int too
    return max(-PRIORITY_MAX_SECONDS, min(PRIORITY_MAX_SECONDS, value))


_INVALID = object()


def evaluate_value(expr: str, event: dict[str, JSON]) -> Any:
    """`expr` over `{"event": event}` as plain JSON data, or `_INVALID`."""
    try:
        return value_of(expr, {"event": event})
    except BadRequest as exc:
        log.warning("flow-control expression does not compile: %s", exc.message)
        return _INVALID
    except Exception as exc:  # CELEvalError and friends: e.g. a missing field
        log.warning(
            "flow-control expression failed expr=%r error=%s (a key counts as <invalid>, "
            "a priority as 0)",
            expr,
            exc,
        )
        return _INVALID


def _int(value: JSON) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _str(value: JSON) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def _period_ms(value: JSON) -> int | None:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    try:
        ms = parse_duration_ms(value)
    except BadRequest:
        return None
    return ms if ms > 0 else None


# --- slots -----------------------------------------------------------------------------------


class Grant:
    """Slots held by one executing job; `release` gives them back (once). Handed over to the
    script that stops the job (`Slots.handoff`), they are given back there: `release` then
    does nothing until that call's answer settles them (`Slots.released`) or hands them
    back (`take_back`: that call did not give them back)."""

    def __init__(self, slots: Slots | None, job_id: str, constraints: Sequence[Constraint]):
        self._slots = slots
        self.job_id = job_id
        self.constraints = list(constraints)
        self._handed = False

    @property
    def holder(self) -> Slots | None:
        """The slots to give back to; None once released."""
        return self._slots

    def release(self, now: int) -> None:
        if self._handed:
            return  # the call that stops the job gives them back (or hands them back)
        slots, self._slots = self._slots, None
        if slots is not None:
            slots.release(self, now)

    def hand_over(self) -> None:
        """The call that stops the job will give the slots back: `release` waits for it."""
        self._handed = True

    def take_back(self, now: int) -> None:
        """That call did not give them back: give them back now."""
        self._handed = False
        self.release(now)

    def settle(self) -> None:
        """Released elsewhere (by the script that stopped the job): nothing to give back."""
        self._handed = False
        self._slots = None


NO_GRANT = Grant(None, "", ())
"""What a job of a function without concurrency or throttle gets: nothing to give back."""


class Slots:
    """The gate the executor passes before running a job's steps."""

    def __init__(self, store: Store, queue: Queue, settings: Settings) -> None:
        self._redis = SlotStore.over(store)
        self._queue = queue
        self._lease_ms = int(settings.lease_seconds * 1000)
        self._resend_ms = int(settings.redeliver_seconds * 1000)
        self._eta_max_ms = int(settings.eta_max_seconds * 1000)
        self.keeper = SlotKeeper(self._redis, self._lease_ms)
        self._admitted: dict[str, list[Constraint]] = {}
        """Start jobs admitted by the call that leased them (`admitted`), and sleep jobs
        given their slots in their wake's round trip (`woke`), with the slots granted: the
        executor's `acquire` takes them."""
        self._parked: set[str] = set()
        """Sleep jobs parked (or gone) in their wake's round trip (`woke`): the executor's
        `acquire` raises `Parked` for them."""

    @property
    def redis(self) -> SlotStore:
        return self._redis

    def acquire(self, fn: FunctionConfig, state: RunState, job: Job, now: int) -> Grant:
        """Let `job` run `state`'s steps now (a Grant to release when it stops), or raise
        `Parked` after deferring or parking it. Free for functions without the options."""
        admitted = self._admitted.pop(job.id, None)
        parked = job.id in self._parked
        self._parked.discard(job.id)
        if not _same_rules(job, fn):  # a wake's, under other rules: admitted again here
            if admitted:
                self.release(Grant(self, job.id, admitted), now)
            admitted, parked = None, False
        if admitted is not None:  # by the call that leased or woke it: its slots are held
            return self._grant(job.id, admitted)
        if parked:
            _log_parked(job.id, state.run_id, fn.id)
            raise Parked(job.id)
        if not has_rules(fn.options):
            return NO_GRANT
        rules = rules_of(fn.options)
        event = state.events[0] if state.events else {}
        if rules.throttle is not None and job.kind is JobKind.START:
            self._throttle(rules.throttle, fn, state, job, event, now)
        if not rules.concurrency:
            return NO_GRANT
        constraints = constraints_of(rules, fn.id, event)
        score = state.created_at - priority_factor(rules.priority, event) * 1000
        got = self._redis.acquire(
            job.id,
            constraints,
            score,
            now,
            self._lease_ms,
            self._resend_ms,
            PARK_RECHECK_MS,
        )
        self._send(got.woken)
        if got.code == "gone":  # the run ended meanwhile: its jobs were dropped
            raise Parked(job.id)
        if got.code == "wait":
            _log_parked(job.id, state.run_id, fn.id)
            raise Parked(job.id)
        return self._grant(job.id, constraints)

    def _grant(self, job_id: str, constraints: list[Constraint]) -> Grant:
        if not constraints:
            return NO_GRANT
        self.keeper.add(job_id, [name for name, _ in constraints])
        return Grant(self, job_id, constraints)

    @staticmethod
    def wake_limits(fn: FunctionConfig, state: RunState) -> StartLimits | None:
        """What a sleep job of `state` (a run of `fn`) carries so that its wake takes its
        slots in the wake's own round trip (`wake_acquire`): its constraints and score
        (`Job.limits`, no throttle: that is a start's). None without `concurrency`."""
        if not has_rules(fn.options) or not rules_of(fn.options).concurrency:
            return None
        event = state.events[0] if state.events else {}
        return start_limits(fn, event, state.created_at, throttled=False)

    def wake_acquire(self, job: Job, now: int) -> SlotAcquire | None:
        """The slot acquisition a sleep job carrying `wake_limits` makes in its wake's round
        trip (`Store.wake_runs`); its answer goes to `woke`. None for other jobs."""
        if job.kind is not JobKind.SLEEP or job.limits is None or not job.limits.constraints:
            return None
        return SlotAcquire(
            job_id=job.id,
            constraints=[(name, limit) for name, limit in job.limits.constraints],
            score=job.limits.score,
            now=now,
            slot_lease_ms=self._lease_ms,
            resend_ms=self._resend_ms,
            park_ms=PARK_RECHECK_MS,
        )

    def woke(self, job: Job, got: tuple[str, Sequence[Job]] | None) -> None:
        """The answer of `job`'s `wake_acquire` in its wake (None: none was made): the
        waiters it woke are sent; slots it granted are held for `acquire`, which raises
        `Parked` for a job it parked (or found gone). A wake that does not run on after all
        gives them back (`forget`); a parked job finished meanwhile just leaves its wait list
        when it comes up (lua/include/slots.lua)."""
        if got is None or job.limits is None:
            return
        code, woken = got
        self._send(woken)
        if code == "ok":
            self._admitted[job.id] = [(name, limit) for name, limit in job.limits.constraints]
        else:
            self._parked.add(job.id)

    def admit(self, fn: FunctionConfig, limits: StartLimits) -> StartAdmit | None:
        """The admission lua/start_run.lua makes of a start job carrying `limits`, under
        `fn`'s rules; None if they are not the rules `limits` were computed under (the job
        is then leased as any job and `acquire` admits it)."""
        if limits.rules != rules_digest(fn.options):
            return None
        rules = rules_of(fn.options)
        admit = StartAdmit(
            score=limits.score,
            constraints=[(name, limit) for name, limit in limits.constraints],
            slot_lease_ms=self._lease_ms,
            resend_ms=self._resend_ms,
            park_ms=PARK_RECHECK_MS,
        )
        if rules.throttle is None or not limits.throttle:
            return admit
        return replace(
            admit,
            throttle=limits.throttle,
            interval_ms=rules.throttle.interval_ms,
            tolerance_ms=rules.throttle.tolerance_ms,
            slack_ms=self._resend_ms,
            horizon_ms=self._eta_max_ms,
            ticket_slack_ms=TICKET_SLACK_MS,
        )

    def admitted(self, job: Job, admit: StartAdmit, start: RunStart, now: int) -> bool:
        """The answer of the call that leased start `job` under `admit`: the waiters it woke
        are sent; a job it parked or deferred is logged (and a deferred one sent with its
        countdown, as `acquire` does); one it leased holds its slots, for `acquire`. True if
        the job may run now."""
        self._send(start.woken)
        if start.leased == "wait":
            _log_parked(job.id, job.run_id, job.function_id)
            return False
        if start.leased == "later":
            log.info(
                "run start throttled run_id=%s function=%s start_in_ms=%d",
                job.run_id,
                job.function_id,
                start.start_at - now,
            )
            if start.start_at - now <= self._eta_max_ms:
                self._queue.dispatch(job, countdown_ms=start.start_at - now)
            return False
        if isinstance(start.leased, str):
            return False  # gone, busy: nothing was admitted
        self._admitted[job.id] = list(admit.constraints)
        return True

    def handoff(self, grant: Grant, now: int) -> SlotRelease | None:
        """The release of `grant`'s slots, for the script that stops its job to make
        (lua/suspend.lua); None when it holds none (or gave them back already). Once that
        script has released them, `released`."""
        if grant.holder is not self or not grant.constraints:
            return None
        return SlotRelease(list(grant.constraints), now, self._lease_ms, self._resend_ms)

    def released(self, grant: Grant, woken: Sequence[Job]) -> None:
        """The script that stopped `grant`'s job gave its slots back, waking `woken`: send
        them; the grant has nothing left to release."""
        grant.settle()
        self.keeper.remove(grant.job_id)
        self._send(woken)

    def settled(self, grant: Grant, woken: Sequence[Job] | None, now: int) -> None:
        """The answer of the call `grant` was handed over to (`Grant.hand_over`): its
        slots given back there, waking `woken`; or (None) not: given back now."""
        if woken is None:
            grant.take_back(now)
        else:
            self.released(grant, woken)

    def forget(self, job_id: str, now: int) -> None:
        """`job_id` will not execute here after all (its run ended): give back the slots its
        start call (or wake) granted, if any."""
        self._parked.discard(job_id)
        admitted = self._admitted.pop(job_id, None)
        if admitted:
            self.release(Grant(self, job_id, admitted), now)

    def release(self, grant: Grant, now: int) -> None:
        """Give the grant's slots back and send the waiters that now fit. A failure is only
        logged: the slots' leases run out on their own."""
        self.keeper.remove(grant.job_id)
        try:
            woken = self._redis.release(
                grant.job_id, grant.constraints, now, self._lease_ms, self._resend_ms
            )
            self._send(woken)
        except Exception:
            log.exception("slot release failed job_id=%s; its leases will expire", grant.job_id)

    def tick(self, now: int) -> int:
        """Beat's sweep: wake waiters whose constraints have room again (a holder died and
        its slot lease ran out, or a wake-up was lost). Returns how many were sent."""
        sent = 0
        for constraint in self._redis.waiting():
            woken = self._redis.release("", [constraint], now, self._lease_ms, self._resend_ms)
            self._send(woken)
            sent += len(woken)
        return sent

    def _throttle(
        self,
        rule: ThrottleRule,
        fn: FunctionConfig,
        state: RunState,
        job: Job,
        event: dict[str, JSON],
        now: int,
    ) -> None:
        name = throttle_name(rule, fn.id, event)
        start, code = self._redis.throttle(
            state.run_id,
            job.id,
            name,
            now,
            rule.interval_ms,
            rule.tolerance_ms,
            self._resend_ms,
            self._eta_max_ms,
            TICKET_SLACK_MS,
        )
        if code == "now":
            return
        if code == "later":
            log.info(
                "run start throttled run_id=%s function=%s start_in_ms=%d",
                state.run_id,
                fn.id,
                start - now,
            )
            if start - now <= self._eta_max_ms:
                self._queue.dispatch(job, countdown_ms=start - now)
        raise Parked(job.id)

    def _send(self, jobs: Sequence[Job]) -> None:
        for job in jobs:
            self._queue.dispatch(job)


def _same_rules(job: Job, fn: FunctionConfig) -> bool:
    """Were a sleep job's `limits` computed under `fn`'s current flow rules (or has it none)?"""
    if job.kind is not JobKind.SLEEP or job.limits is None:
        return True
    return job.limits.rules == rules_digest(fn.options)


class SlotKeeper:
    """One thread per process renewing the slot leases of the jobs executing here, every
    third of the lease (started on first use: processes that never hold a slot have none)."""

    def __init__(self, redis: SlotStore, lease_ms: int) -> None:
        self._redis = redis
        self._lease_ms = lease_ms
        self._held: dict[str, list[str]] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def add(self, job_id: str, names: list[str]) -> None:
        with self._lock:
            self._held[job_id] = names
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="slots", daemon=True)
                self._thread.start()

    def remove(self, job_id: str) -> None:
        with self._lock:
            self._held.pop(job_id, None)

    def held(self) -> dict[str, list[str]]:
        with self._lock:
            return dict(self._held)

    def renew_all(self, now: int) -> None:
        for job_id, names in self.held().items():
            try:
                if self._redis.renew(job_id, names, now, self._lease_ms) < len(names):
                    log.warning("concurrency slot lease lost job_id=%s", job_id)
            except Exception:
                log.exception("slot renewal failed job_id=%s", job_id)

    def _loop(self) -> None:
        while True:
            time.sleep(self._lease_ms / 3000)
            self.renew_all(int(time.time() * 1000))


__all__ = [
    "NO_GRANT",
    "ConcurrencyRule",
    "FlowRules",
    "Grant",
    "Parked",
    "SlotKeeper",
    "Slots",
    "ThrottleRule",
    "constraint_name",
    "constraints_of",
    "key_hash",
    "priority_factor",
    "rules_digest",
    "rules_of",
    "start_limits",
    "throttle_name",
]


def _log_parked(job_id: str, run_id: str, function_id: str) -> None:
    log.info(
        "job parked for a concurrency slot job_id=%s run_id=%s function=%s",
        job_id,
        run_id,
        function_id,
    )
