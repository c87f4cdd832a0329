"""Loading user functions from modules."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.errors import InvalidFunction
from app.functions import EXAMPLE_MODULE, FunctionSet, load_functions
from app.models import JSON

MODULE_A = """
import app.sdk as inngest

client = inngest.Inngest(app_id="loaded")

@client.create_function(fn_id="global", trigger=inngest.TriggerEvent(event="a"))
def global_fn(ctx):
    return 1

def _factory():
    # Not a module global: found through the client.
    @client.create_function(
        fn_id="made", trigger=inngest.TriggerEvent(event="b"), on_failure=lambda ctx: None
    )
    def made(ctx):
        return 2

_factory()
"""

MODULE_B = """
import app.sdk as inngest
from {a} import client

other = inngest.Inngest(app_id="other")

@other.create_function(fn_id="x", trigger=inngest.TriggerCron(cron="* * * * *"))
def x(ctx):
    return 3
"""

MODULE_DUP = """
import app.sdk as inngest

client = inngest.Inngest(app_id="loaded")

@client.create_function(fn_id="global", trigger=inngest.TriggerEvent(event="a"))
def again(ctx):
    return 1
"""


@pytest.fixture
def modules(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> Iterator[dict[str, str]]:
    prefix = f"stepline_test_{request.node.name.replace('[', '_').replace(']', '_')}"
    names = {"a": f"{prefix}_a", "b": f"{prefix}_b", "dup": f"{prefix}_dup"}
    (tmp_path / f"{names['a']}.py").write_text(textwrap.dedent(MODULE_A))
    (tmp_path / f"{names['b']}.py").write_text(MODULE_B.format(a=names["a"]))
    (tmp_path / f"{names['dup']}.py").write_text(MODULE_DUP)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield names
    for name in names.values():
        sys.modules.pop(name, None)


def test_load_collects_globals_and_client_functions(modules: dict[str, str]) -> None:
    functions = load_functions([modules["a"], modules["b"]])
    assert sorted(functions) == ["loaded-global", "loaded-made", "loaded-made-failure", "other-x"]
    entry = functions["loaded-made-failure"]
    assert entry.config.triggers[0].event == "inngest/function.failed"
    config, handler, client = functions["loaded-global"]
    assert config.id == "loaded-global" and handler(None) == 1 and client.app_id == "loaded"
    assert {c.id for c in functions.configs()} == set(functions)
    assert {c.app_id for c in functions.clients()} == {"loaded", "other"}


def test_duplicate_slugs_are_refused(modules: dict[str, str]) -> None:
    with pytest.raises(InvalidFunction, match="duplicate function id 'loaded-global'"):
        load_functions([modules["a"], modules["dup"]])


def test_missing_module() -> None:
    with pytest.raises(InvalidFunction, match="no_such_module_xyz"):
        load_functions(["no_such_module_xyz"])


def test_install_sender_reaches_every_client(modules: dict[str, str]) -> None:
    functions = load_functions([modules["a"], modules["b"]])
    sent: list[str] = []

    def sender(events: list[dict[str, JSON]]) -> list[str]:
        sent.extend(str(e["name"]) for e in events)
        return ["id"]

    functions.install_sender(sender)
    from app.sdk import Event

    for client in functions.clients():
        assert client.send_sync(Event(name=f"ping-{client.app_id}")) == ["id"]
    assert sorted(sent) == ["ping-loaded", "ping-other"]


def test_empty_and_example_sets() -> None:
    assert len(load_functions([])) == 0 and FunctionSet().configs() == []
    example = load_functions([EXAMPLE_MODULE])
    assert {"example-hello", "example-flaky", "example-flaky-failure"} <= set(example)
    assert all(c.app_id == "example" for c in example.configs())
