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


def test_ids_of_one_millisecond_sort_in_the_order_they_were_made() -> None:
    """Events sent one after another list in that order even in the same millisecond (CI saw
    two of six events listed swapped when their random parts happened to sort the other way)."""
    now_ms = 1_700_000_000_500
    made = [new_ulid(now_ms) for _ in range(20)] + new_ulids(now_ms, 30) + [new_ulid(now_ms)]
    assert made == sorted(made) and len(set(made)) == len(made)
    assert {ulid_ms(value) for value in made} == {now_ms}


def test_a_forked_child_does_not_count_on_from_its_parents_last_id() -> None:
    import os

    now_ms = 1_700_000_000_900
    parent_last = new_ulid(now_ms)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next id of the same millisecond
        os.write(write, new_ulid(now_ms).encode())
        os._exit(0)
    os.close(write)
    child_next = os.read(read, 64).decode()
    os.waitpid(pid, 0)
    parent_next = new_ulid(now_ms)
    assert ULID.from_str(child_next).milliseconds == now_ms
    # the parent counts on by one; the child drew a fresh random part, not the same next id
    assert int(ULID.from_str(parent_next)) == int(ULID.from_str(parent_last)) + 1
    assert child_next != parent_next
