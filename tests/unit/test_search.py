"""The quick evaluator gives cel-python's answers: over every value type and every filter form
it supports (true, false and error alike: each filter is also checked under `!`)."""

from __future__ import annotations

from app import expressions
from app.search import Not, Unsupported, parse, quick
from tests.history.test_search import FILTERS, VALUES

MORE = [
    'event.data.v in ["abc", "x"]',
    '!(event.data.v in ["abc"])',
    "event.data.v < 2.5 || event.data.v > 'b'",
    "event.data.v <= true",
    "null == event.data.v",
    "event.data.v != null",
    "7 > event.data.v",
    'status < "D"',
    "ended_at > 1 && created_at <= 3",
]


def _variables(value: object, i: int) -> dict[str, object]:
    data = {"v": value} if i % 2 else {}
    return {
        "event": {"name": "a", "data": data},
        "output": None if i % 3 else {"total": value},
        "error": {"message": f"boom {value}"} if i % 3 == 1 else None,
        "status": ("Completed", "Failed", "Cancelled")[i % 3],
        "function_id": f"f{i % 3}",
        "run_id": f"r{i}",
        "created_at": i,
        "ended_at": None if i % 4 == 0 else i + 1,
    }


def test_quick_answers_as_cel_python_does() -> None:
    supported = 0
    for text in [*FILTERS, *MORE]:
        search = parse(text, "runs")
        try:
            quick(search.tree, {}, check=True)
        except Exception:
            continue
        supported += 1
        for i, value in enumerate(VALUES * 2):
            variables = _variables(value, i)
            for tree, source in ((search.tree, text), (Not(search.tree), f"!({text})")):
                expected = expressions.evaluate(source, variables)
                try:
                    answer = quick(tree, variables)
                except Unsupported:  # a value left to cel-python
                    assert ".contains(" in text
                    continue
                assert (answer is True) == expected, (source, variables)
            assert search.matches(variables) == expressions.evaluate(text, variables)
    assert supported >= 40
