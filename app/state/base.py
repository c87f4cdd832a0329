"""What every group of store verbs shares: the client, the key layout and the scripts
(`Store.__init__` sets them), the paging of newest-first indexes, and the JSON encoding."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from app.state.keys import Keys
from app.state.records import Position
from app.state.scripts import Scripts

if TYPE_CHECKING:
    from redis import Redis

RETRIES = 20
"""How often a script that found its snapshot stale (a pause or job set changed between the
read and the script) is retried with a fresh read before giving up with a StateError."""


class StoreBase:
    """The state each verb group (`runs.py`, `pauses.py`, ...) works on; `Store` sets it."""

    _client: Redis[str]
    _keys: Keys
    _scripts: Scripts

    def _score_page(
        self,
        key: str,
        limit: int,
        low: int | None,
        high: int | None,
        after: Position | None,
    ) -> tuple[list[tuple[str, int]], bool]:
        """Up to `limit` members of a zset, highest score first (equal scores: highest member
        first), with low <= score < high, strictly after position `after`. Returns them and
        whether more follow. Members equal in score to `after` are skipped in bounded reads,
        so the cost is O(log N + limit + ties)."""
        if limit <= 0:
            return [], False
        top: str = "+inf" if high is None else f"({high}"
        if after is not None and (high is None or after[0] < high):
            top = str(after[0])
        bottom: str = "-inf" if low is None else str(low)
        out: list[tuple[str, int]] = []
        offset = 0
        while len(out) <= limit:
            want = limit + 1 - len(out)
            batch = self._client.zrevrangebyscore(
                key, top, bottom, start=offset, num=want, withscores=True
            )
            if not batch:
                break
            offset += len(batch)
            for member, raw_score in batch:
                score = int(raw_score)
                if after is not None and score == after[0] and member >= after[1]:
                    continue
                out.append((member, score))
            if len(batch) < want:
                break
        return out[:limit], len(out) > limit

    def _page(self, key: str, limit: int, before: str | None) -> list[str]:
        """Members of a zset, highest score first, after `before` (exclusive)."""
        if limit <= 0:
            return []
        start = 0
        if before is not None:
            rank = self._client.zrevrank(key, before)
            if rank is None:
                return []
            start = int(rank) + 1
        return list(self._client.zrevrange(key, start, start + limit - 1))


# --- encoding ---------------------------------------------------------------------------------
def _dumps(value: Any) -> str:
    # Never NaN or Infinity: what is stored is answered by the API as strict JSON.
    return json.dumps(value, separators=(",", ":"), allow_nan=False)


def _opt_int(raw: str | None) -> int | None:
    return None if raw is None or raw == "" else int(raw)
