"""Search in the history store, on SQLite and PostgreSQL: a filter SQL can say whole must match
exactly the runs CEL matches; a filter it cannot is narrowed by SQL and finished by CEL; the
bounds make a page partial and its cursor continues where the search stopped."""

from __future__ import annotations

import pytest

from app.errors import BadRequest
from app.history.cel_sql import translate
from app.history.sql import RUNS_SOURCE, SqlHistory
from app.history.store import HistoryStore
from app.search import parse, run_variables
from app.state.records import EventCriteria
from tests.history.conftest import T0, archived

VALUES = [1, 2, 7, -3, 1.0, 2.5, "1", "abc", "abd", "ab", "é", "", True, False, None, [1], {"a": 1}]

FILTERS = [
    "event.data.v == 1",
    "event.data.v != 1",
    "event.data.v == 1.0",
    "event.data.v < 2",
    "event.data.v >= 2",
    "event.data.v > -5 && event.data.v <= 7",
    "event.data.v == 2.5",
    "event.data.v > 1.5",
    'event.data.v == "1"',
    'event.data.v != "abc"',
    'event.data.v < "abd"',
    'event.data.v >= "ab"',
    'event.data.v.startsWith("ab")',
    'event.data.v.endsWith("c")',
    'event.data.v.contains("b")',
    'event.data.v.startsWith("")',
    "event.data.v == true",
    "event.data.v != false",
    "event.data.v",
    "!event.data.v",
    "event.data.v == null",
    "event.data.v in [1, 2, 3]",
    'event.data.v in ["abc", "é"]',
    "event.data.v in []",
    "!(event.data.v == 1)",
    "event.data.v == 1 || event.data.missing == 2",
    "event.data.missing == 2 || event.data.v == 7",
    "!(event.data.missing == 2) || event.data.v == 7",
    "event.data.v == 1 && status == 'Failed'",
    "status in ['Failed', 'Cancelled'] && !(function_id == 'f1')",
    "status != 'Completed' || event.data.v == 'abc'",
    "function_id.startsWith('f') && created_at >= 1700000000005",
    "created_at < 1700000000004 || ended_at > 1700000000060",
    "error.message.contains('boom')",
    "error.message.startsWith('bo') && error.code == 3",
    "output == null",
    "output.total > 3",
    "output == 'done'",
    "event.name == 'app/a'",
    "event.data.v + 1 == 2",
    "has(event.data.v) && event.data.v == 1",
    "size(event.data.v) == 3",
    'event.data["v"] == 7',
    "event.data.items.exists(i, i == 2)",
    "!(status == 'Completed') && event.data.v == 1",
    "!(status == 'Failed' && event.data.v == 1)",
    "!(status == 'Failed' && function_id == 'f1')",
    "(status == 'Failed' || function_id == 'f0') && event.data.v != 1",
    "(status == 'Failed' || event.data.v == 'abc') && created_at < 1700000000012",
    "created_at >= 1700000000003 && created_at < 1700000000009 && event.data.v + 1 == 2",
]


def _runs() -> list[object]:
    out = []
    for i, value in enumerate(VALUES):
        status = ("Completed", "Failed", "Cancelled")[i % 3]
        data = {"v": value, "items": [i, 2]} if i % 4 else {"items": [i]}
        out.append(
            archived(
                f"run{i:03d}",
                function_id=f"f{i % 3}",
                status=status,
                created_at=T0 + i,
                ended_at=T0 + i + 50,
                events=[{"name": "app/a" if i % 2 else "app/b", "data": data}],
                output=None if status != "Completed" else ("done" if i % 2 else {"total": i}),
                error={"message": f"boom {i}", "code": i % 5} if status == "Failed" else None,
                steps=[],
            )
        )
    return out


def _cel_matches(filter_text: str, runs: list[object]) -> list[str]:
    search = parse(filter_text, "runs")
    ids = []
    for run in runs:
        variables = run_variables(
            event=run.events[0],  # type: ignore[attr-defined]
            output=run.output,  # type: ignore[attr-defined]
            error=run.error,  # type: ignore[attr-defined]
            status=run.status,  # type: ignore[attr-defined]
            function_id=run.function_id,  # type: ignore[attr-defined]
            run_id=run.run_id,  # type: ignore[attr-defined]
            created_at=run.created_at,  # type: ignore[attr-defined]
            ended_at=run.ended_at,  # type: ignore[attr-defined]
        )
        if search.matches(variables):
            ids.append(run.run_id)  # type: ignore[attr-defined]
    return sorted(ids, reverse=True)


def test_every_filter_finds_what_cel_finds_and_sql_alone_when_it_can(
    history: HistoryStore,
) -> None:
    runs = _runs()
    history.save_runs(runs, now=T0)  # type: ignore[arg-type]
    assert isinstance(history, SqlHistory)
    dialect = history.engine.dialect.name
    exact = 0
    for text in FILTERS:
        expected = _cel_matches(text, runs)
        page = history.search_runs(parse(text, "runs"), 100, scan=1000, evaluate=1000)
        assert [view.run_id for view in page.items] == expected, text
        assert page.next is None and not page.partial
        translation = translate(parse(text, "runs").tree, RUNS_SOURCE, dialect)
        if translation.exact:
            exact += 1
            count, known = history.count_runs(parse(text, "runs"), evaluate=1000)
            assert (count, known) == (len(expected), True), text
    assert exact >= 30  # the common forms are said in SQL alone


def test_filters_that_sql_cannot_say_are_evaluated_by_cel() -> None:
    for text in ("event.data.v + 1 == 2", "size(event.data.v) == 3", "has(event.data.v)"):
        assert not translate(parse(text, "runs").tree, RUNS_SOURCE, "sqlite").exact
    both = translate(
        parse("status == 'Failed' && size(error.message) > 2", "runs").tree, RUNS_SOURCE, "sqlite"
    )
    assert both.clause is not None and not both.exact  # SQL narrows, CEL decides


def test_a_bounded_scan_answers_a_partial_page_and_its_cursor_goes_on(
    history: HistoryStore,
) -> None:
    runs = [
        archived(
            f"run{i:03d}", created_at=T0 + i, events=[{"name": "a", "data": {"n": i}}], steps=[]
        )
        for i in range(30)
    ]
    history.save_runs(runs, now=T0)
    search = parse("event.data.n % 10 == 0", "runs")  # not SQL: CEL on a bounded set
    first = history.search_runs(search, 5, scan=1000, evaluate=12)
    assert [v.run_id for v in first.items] == ["run020"]
    assert first.partial and first.next == (T0 + 18, "run018")
    second = history.search_runs(search, 5, after=first.next, scan=1000, evaluate=12)
    assert [v.run_id for v in second.items] == ["run010"]
    assert second.partial
    third = history.search_runs(search, 5, after=second.next, scan=1000, evaluate=12)
    assert [v.run_id for v in third.items] == ["run000"]
    assert third.next is None and not third.partial
    exact = parse("event.data.n == 3", "runs")
    assert isinstance(history, SqlHistory)
    if history.engine.dialect.name == "postgresql":  # the GIN index finds it at once
        found = history.search_runs(exact, 5, scan=10, evaluate=12)
        assert [v.run_id for v in found.items] == ["run003"] and found.next is None
        assert not found.partial
        exact = parse("event.data.n == 3 || event.data.n < 4", "runs")  # no index serves it
    scanned = history.search_runs(exact, 5, scan=10, evaluate=12)
    assert scanned.items == [] and scanned.partial and scanned.next == (T0 + 20, "run020")
    rest = history.search_runs(exact, 5, after=scanned.next, scan=10, evaluate=12)
    assert rest.items == [] and rest.next == (T0 + 10, "run010")
    last = history.search_runs(exact, 5, after=rest.next, scan=10, evaluate=12)
    assert [v.run_id for v in last.items][:1] == ["run003"] and last.next is None


def test_conditions_on_plain_columns_narrow_the_bounded_walk(history: HistoryStore) -> None:
    """The bounded walk looks only at rows that can match: a filter's status, function and
    time conditions reach runs far below the newest `scan` rows, complete (not partial)."""
    runs = [
        archived(
            f"run{i:03d}",
            function_id="old" if i < 3 else "new",
            status="Cancelled" if i < 3 else "Completed",
            created_at=T0 + i,
            events=[{"name": "a", "data": {"n": i}}],
            steps=[],
        )
        for i in range(40)
    ]
    history.save_runs(runs, now=T0)
    for text, expected in [
        ("status == 'Cancelled' && function_id == 'old'", ["run002", "run001", "run000"]),
        (f"created_at >= {T0 + 4} && created_at < {T0 + 6}", ["run005", "run004"]),
        ("status in ['Cancelled'] && event.data.n >= 1", ["run002", "run001"]),
        ("function_id == 'old' && event.data.n % 2 == 0", ["run002", "run000"]),  # CEL too
        ("!(function_id == 'new') && event.data.n != 1", ["run002", "run000"]),
    ]:
        page = history.search_runs(parse(text, "runs"), 10, scan=5, evaluate=5)
        assert [v.run_id for v in page.items] == expected, text
        assert page.next is None and not page.partial, text
    # a condition on JSON on one side of `||` does not narrow: the walk stays bounded
    either = parse("status == 'Cancelled' || event.data.n == 99", "runs")
    assert translate(either.tree, RUNS_SOURCE, "sqlite").narrow is None
    bounded = history.search_runs(either, 10, scan=5, evaluate=5)
    assert bounded.items == [] and bounded.partial


def test_too_few_matches_in_the_first_rows_walk_on_by_their_density(
    history: HistoryStore,
) -> None:
    """A filter SQL says whole that matched too few of the first `scan` rows walks on as far
    as their density says fills the page (at most `extend` rows); a value not found there
    goes to the GIN index on PostgreSQL, or walks `extend` rows on SQLite."""
    runs = [
        archived(
            f"run{i:03d}",
            created_at=T0 + i,
            events=[{"name": "a", "data": {"k": "y" if i == 3 else "x" if i % 4 == 0 else ""}}],
            steps=[],
        )
        for i in range(60)
    ]
    history.save_runs(runs, now=T0)
    common = parse("event.data.k == 'x'", "runs")
    # the first 8 rows (run059..run052) hold 2: 16 more rows fill the page of 5
    page = history.search_runs(common, 5, scan=8, evaluate=5, extend=40)
    assert [v.run_id for v in page.items] == ["run056", "run052", "run048", "run044", "run040"]
    assert not page.partial and page.next == (T0 + 40, "run040")
    assert isinstance(history, SqlHistory)
    pg = history.engine.dialect.name == "postgresql"
    # without `extend`: PostgreSQL goes to the GIN index, SQLite answers the first rows
    short = history.search_runs(common, 5, scan=8, evaluate=5)
    assert [v.run_id for v in short.items] == [v.run_id for v in page.items][: 5 if pg else 2]
    assert short.partial is not pg
    # a density too low to fill the page within `extend`: walk `extend` rows (no GIN there)
    ranged = parse("event.data.k >= 'x'", "runs")
    few = history.search_runs(ranged, 5, scan=8, evaluate=5, extend=12)
    assert [v.run_id for v in few.items] == ["run056", "run052", "run048", "run044", "run040"]
    assert few.next == (T0 + 40, "run040")
    rare = parse("event.data.k == 'y'", "runs")
    found = history.search_runs(rare, 5, scan=8, evaluate=5, extend=40)
    if pg:  # the GIN index finds it at once
        assert [v.run_id for v in found.items] == ["run003"] and not found.partial
    else:  # walked run051..run012: not there yet
        assert found.items == [] and found.partial and found.next == (T0 + 12, "run012")
        rest = history.search_runs(rare, 5, after=found.next, scan=8, evaluate=5, extend=40)
        assert [v.run_id for v in rest.items] == ["run003"] and not rest.partial


def test_events_search_by_name_time_and_filter(history: HistoryStore) -> None:
    from app.state.records import EventRecord

    history.save_events(
        [
            EventRecord(
                f"ev{i:03d}",
                T0 + i,
                {"name": f"shop/{'paid' if i % 2 else 'left'}", "data": {"n": i}},
            )
            for i in range(20)
        ]
    )
    page = history.search_events(
        parse("event.data.n > 10", "events"),
        100,
        EventCriteria(name="shop/paid", received_before=T0 + 19),
        scan=100,
        evaluate=100,
    )
    assert [r.internal_id for r in page.items] == ["ev017", "ev015", "ev013", "ev011"]
    by_name = history.search_events(
        parse("event.name.startsWith('shop/l')", "events"), 3, scan=100, evaluate=100
    )
    assert [r.internal_id for r in by_name.items] == ["ev018", "ev016", "ev014"]
    assert by_name.next == (T0 + 14, "ev014")


def test_bad_filters_name_the_problem() -> None:
    with pytest.raises(BadRequest, match="unknown name 'output'"):
        parse("output == 1", "events")
    with pytest.raises(BadRequest, match="invalid expression"):
        parse("status ==", "runs")
    with pytest.raises(BadRequest, match="empty"):
        parse("  ", "runs")
