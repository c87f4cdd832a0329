"""What checking hostile input costs on the event path: body parsing and CEL conversion.

    BENCH_REDIS_URL=redis://127.0.0.1:6379/14 python -m bench.ingest [--repeat 3]

Three event bodies: one small event (~0.5 KB), one wide event (~200 KB, 4,000 fields) and a
batch of 100 small events. For each it prints, as medians over many calls:
- `json.loads` of the body alone: the baseline, the least any parser can cost;
- the same validation after a plain `json.loads` (no strict checks), and `parse_events`
  (what `POST /e/<key>` runs: parse, strict JSON checks, validation), each as a ratio to
  the baseline;
- the whole `POST /e/<key>` (Flask test client, events stored in Redis, jobs recorded, not
  sent), and its ratio to the baseline.
Then the CEL side: a trigger expression evaluated over the small event through
`expressions.trigger_matches` (conversion to CEL values + evaluation), against the baseline
of celpy's own `json_to_cel` + evaluation of the same compiled program.
Printed, not asserted.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

from bench.harness import REDIS_URL, flush, median


class _NoSend:
    def send_task(self, name: str, args: object = None, **options: object) -> None:
        return None


def _small(i: int) -> dict[str, object]:
    return {
        "name": "bench/order.created",
        "data": {
            "order_id": f"ord_{i:08d}",
            "customer": {"id": 4242 + i, "email": f"c{i}@example.com", "tier": "gold"},
            "items": [{"sku": f"sku-{k}", "qty": k + 1, "price": 9.99 * (k + 1)} for k in range(5)],
            "total": 123.45,
            "tags": ["new", "web", "promo"],
        },
        "user": {"id": f"u{i}"},
    }


def _wide() -> dict[str, object]:
    data = {f"field_{k:05d}": {"value": k * 1.5, "label": f"label {k}"} for k in range(4_000)}
    return {"name": "bench/order.created", "data": data}


def _time_us(call: Callable[[], object], seconds: float = 1.5, min_calls: int = 20) -> float:
    samples: list[float] = []
    deadline = time.perf_counter() + seconds
    while len(samples) < min_calls or time.perf_counter() < deadline:
        start = time.perf_counter()
        call()
        samples.append((time.perf_counter() - start) * 1e6)
    return median(samples)


def _lenient_parse_events(body: bytes) -> list[dict[str, object]]:
    """The same validation after a plain `json.loads`: the parse without the strict checks."""
    from app.api.events import validate_event

    parsed = json.loads(body)
    items = parsed if isinstance(parsed, list) else [parsed]
    return [validate_event(item, f"events[{i}]") for i, item in enumerate(items)]


def bodies() -> dict[str, bytes]:
    return {
        "small event": json.dumps(_small(0)).encode(),
        "wide event": json.dumps(_wide()).encode(),
        "batch of 100": json.dumps([_small(i) for i in range(100)]).encode(),
    }


def run_once() -> None:
    from celpy.adapter import json_to_cel

    from app import expressions
    from app.api import create_app
    from app.api.events import parse_events
    from app.config import Settings
    from app.engine import Engine
    from app.functions import FunctionSet
    from app.models import Trigger

    flush()
    settings = Settings.from_env().replace(redis_url=REDIS_URL, functions=[])
    engine = Engine.create(settings, sender=_NoSend(), local=FunctionSet())
    client = create_app(engine).test_client()
    try:
        for label, body in bodies().items():
            base = _time_us(lambda body=body: json.loads(body))  # type: ignore[misc]
            parse = _time_us(lambda body=body: parse_events(body))  # type: ignore[misc]
            old = _time_us(lambda body=body: _lenient_parse_events(body))  # type: ignore[misc]
            post = _time_us(
                lambda body=body: client.post(  # type: ignore[misc]
                    "/e/bench", data=body, content_type="application/json"
                ),
                min_calls=10,
            )
            print(
                f"{label:>13} ({len(body) / 1024:6.1f} KB): json.loads {base:8.1f} us | "
                f"lenient parse+validate {old:8.1f} us ({old / base:4.2f}x) | "
                f"parse_events {parse:8.1f} us ({parse / base:4.2f}x) | "
                f"POST /e {post:8.1f} us ({post / base:5.2f}x)"
            )
            flush()
        expr = "event.data.total > 100 && event.data.customer.tier == 'gold'"
        trigger = Trigger(event="bench/order.created", expression=expr)
        event = _small(1)
        program = expressions.compile_expression(expr)
        base = _time_us(lambda: program.evaluate({"event": json_to_cel(event)}))
        ours = _time_us(lambda: expressions.trigger_matches(trigger, event))  # type: ignore[arg-type]
        print(
            f"CEL trigger over the small event: json_to_cel+evaluate {base:7.1f} us | "
            f"trigger_matches {ours:7.1f} us ({ours / base:4.2f}x)"
        )
    finally:
        engine.store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    for i in range(args.repeat):
        print(f"-- run {i + 1} of {args.repeat}")
        run_once()


if __name__ == "__main__":
    main()
