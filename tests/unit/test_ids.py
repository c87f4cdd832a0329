"""app.ids.new_ulids: a request's ULIDs, as python-ulid reads them."""

from __future__ import annotations

from ulid import ULID

from app.ids import new_ulid, new_ulids, ulid_ms


def test_new_ulids_are_valid_ulids_of_the_given_time() -> None:
    for now_ms in (0, 1, 1_700_000_000_123, 2**48 - 1):
        ids = new_ulids(now_ms, 50)
        assert len(ids) == 50 and len(set(ids)) == 50
        for value in ids:
            parsed = ULID.from_str(value)
            assert str(parsed) == value and len(value) == 26
            assert parsed.milliseconds == now_ms and ulid_ms(value) == now_ms


def test_new_ulids_sort_with_new_ulid_by_time() -> None:
    [earlier] = new_ulids(1_700_000_000_000, 1)
    later = new_ulid(1_700_000_000_001)
    assert earlier[:10] < later[:10]
    assert new_ulids(5, 0) == []
