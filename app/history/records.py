"""What the archiver moves from Redis to the history store: plain dataclasses, no I/O.

The history store answers reads with the records the Redis store uses (`RunView`,
`EventRecord`, `Page`, `RunState`, `MemoizedSteps` from `app.state.records`), so the API shows
an archived run exactly as it showed the live one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from app.models import JSON


@dataclass
class ArchivedStep:
    step_id: str
    """The hashed step id (the key of the run's `steps` / `history` hashes)."""
    record: dict[str, JSON] | None
    """The step's history record as `Store.get_run` shows it (name, kind, status, attempts,
    started_at, ended_at, error, order, ...), without `memo`; None for a memoized step that
    has no record (such a step is replayed but not shown)."""
    memoized: bool = False
    memo: JSON = None
    """The memoized value (meaningful only when `memoized`)."""
    stack_index: int | None = None
    """Position on the run's stack (completion order) when memoized, else None."""

    @property
    def position(self) -> int:
        """First-seen order, as the run's history records it."""
        order = (self.record or {}).get("order", 0)
        return int(order) if isinstance(order, int | str) and str(order).isdigit() else 0


@dataclass
class ArchivedRun:
    """A finished run with everything the API, rerun and replay read from it."""

    run_id: str
    function_id: str
    status: str
    created_at: int
    started_at: int | None
    ended_at: int
    event_ids: list[str]
    events: list[dict[str, JSON]]
    """The triggering events, as sent to the function (wire form)."""
    output: JSON = None
    error: JSON = None
    original_run_id: str | None = None
    correlation_id: str | None = None
    steps: list[ArchivedStep] = field(default_factory=list)
    logs: dict[str, JSON] | None = None
    """`{"lines": [...], "dropped": n}`: its `ctx.logger` lines, None when it logged none."""
