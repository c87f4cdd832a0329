"""Store verbs for pauses (a run suspended until an event arrives or a timeout passes):
saved once, indexed for matching, consumed by exactly one resumer."""

from __future__ import annotations

from typing import Literal

from app.errors import StateError
from app.models import JSON, Job, Pause
from app.state.base import RETRIES, StoreBase, _dumps
from app.state.records import ConsumeResult
from app.state.scripts import PauseRef

SignalSave = Literal["created", "exists", "ended", "conflict"]
_SIGNAL_SAVES: dict[int, SignalSave] = {1: "created", 0: "exists", -1: "ended", -2: "conflict"}


class PauseVerbs(StoreBase):
    """Part of `Store`: pauses."""

    def save_pause(self, pause: Pause) -> bool:
        """Insert if absent (deterministic ids make replays harmless). Indexes it by event
        name, and by (index_path, index_value) when set, else in the event's scan set; by
        correlation id when set; in the run's pause set. Returns True if created.

        False also when the pause's run is ended or missing (nothing is written)."""
        raw = pause.model_dump_json()
        return self._scripts.save_pause(_pause_ref(pause, raw), pause.expires_at) == 1

    def save_signal_pause(self, pause: Pause, replace: bool) -> SignalSave:
        """Save a pause waiting for the signal named by its correlation id. Signal names are
        unique among pending waits: while another pending pause holds the name, "conflict"
        (nothing written) unless `replace`, which takes the name over (the other pause stays
        pending until its timeout, but no signal reaches it)."""
        raw = pause.model_dump_json()
        mode = "replace" if replace else "fail"
        code = self._scripts.save_pause(_pause_ref(pause, raw), pause.expires_at, mode)
        return _SIGNAL_SAVES[code]

    def get_pause(self, pause_id: str) -> Pause | None:
        raw = self._client.get(self._keys.pause(pause_id))
        return None if raw is None else Pause.model_validate_json(raw)

    def pause_index_paths(self, event_name: str) -> list[str]:
        """The index paths (e.g. `async.data.order_id`) pending pauses of this event use."""
        return sorted(self._client.hkeys(self._keys.pause_paths(event_name)))

    def find_pauses(
        self, event_name: str, lookups: list[tuple[str, str]], limit: int = 1000
    ) -> list[Pause]:
        """Pauses waiting for `event_name` that might match: every unindexed pause plus those
        indexed under each (path, value) in `lookups`. Never scans indexed pauses.

        Indexed candidates come first; past `limit` the rest are left out."""
        pipe = self._client.pipeline(transaction=False)
        for path, value in lookups:
            pipe.smembers(self._keys.pause_index(event_name, path, value))
        pipe.smembers(self._keys.pause_scan(event_name))
        ids: list[str] = []
        seen: set[str] = set()
        for members in pipe.execute():
            for pause_id in sorted(members):
                if pause_id not in seen:
                    seen.add(pause_id)
                    ids.append(pause_id)
        ids = ids[: max(limit, 0)]
        if not ids:
            return []
        raws = self._client.mget([self._keys.pause(pause_id) for pause_id in ids])
        return [Pause.model_validate_json(raw) for raw in raws if raw is not None]

    def pause_by_correlation(self, correlation_id: str) -> Pause | None:
        pause_id = self._client.hget(self._keys.pause_correlations, correlation_id)
        return None if pause_id is None else self.get_pause(pause_id)

    def consume_pause(
        self, pause_id: str, memo: JSON, now: int, resume: Job | None = None, send_by: int = 0
    ) -> ConsumeResult:
        """Exactly one resumer wins: write `memo` under the pause's step (first write wins),
        then delete the pause and its index entries. A pause already gone loses.

        A step that already has a memo (even the same bytes) also loses, and the stale pause
        is deleted; so does a pause whose run is ended or missing. `pause` is the pause as
        read (None if it was gone). `now` is not used.

        With `resume`, the winner that leaves no parallel step pending also creates that job
        (as `enqueue_job` would, `send_by` its resend time) in the same atomic step;
        `ConsumeResult.resumed` says so and the caller then sends it."""
        memo_json = _dumps(memo)
        resume_id = resume.id if resume is not None else ""
        resume_json = resume.model_dump_json() if resume is not None else ""
        for _ in range(RETRIES):
            raw = self._client.get(self._keys.pause(pause_id))
            if raw is None:
                return ConsumeResult(False, None, 0)
            pause = Pause.model_validate_json(raw)
            code, pending, resumed = self._scripts.consume_pause(
                _pause_ref(pause, raw), pause.step, memo_json, resume_id, resume_json, send_by
            )
            if code != "changed":
                return ConsumeResult(code == "won", pause, pending, resumed)
        raise StateError(f"pause {pause_id} kept changing while being consumed")

    def delete_pause(self, pause_id: str) -> None:
        for _ in range(RETRIES):
            raw = self._client.get(self._keys.pause(pause_id))
            if raw is None:
                return
            pause = Pause.model_validate_json(raw)
            if self._scripts.delete_pause(_pause_ref(pause, raw)) != -1:
                return
        raise StateError(f"pause {pause_id} kept changing while being deleted")

    def count_pauses(self) -> int:
        return int(self._client.zcard(self._keys.pause_expiry))

    def expired_pauses(self, before: int, limit: int = 1000) -> list[str]:
        """Ids of pauses that expired before `before` (ms), oldest first: for garbage
        collection of pauses whose timeout never consumed them."""
        ids = self._client.zrangebyscore(
            self._keys.pause_expiry, "-inf", f"({before}", start=0, num=limit
        )
        return list(ids)


def _pause_ref(pause: Pause, raw: str) -> PauseRef:
    mode: Literal["idx", "scan", ""] = ""
    if pause.event:
        indexed = bool(pause.index_path) and pause.index_value is not None
        mode = "idx" if indexed else "scan"
    return PauseRef(
        pause_id=pause.id,
        run_id=pause.run_id,
        raw=raw,
        event=pause.event,
        mode=mode,
        index_path=(pause.index_path or "") if mode == "idx" else "",
        index_value=(pause.index_value or "") if mode == "idx" else "",
        correlation_id=pause.correlation_id or "",
    )
