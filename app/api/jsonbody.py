"""JSON in and out of the API, strict in this one place.

    parse(raw)             a request body as any JSON value; a refusal names the field
    request_object()       the current request's body as an object (`/v1` bodies)
    StrictJSONProvider     Flask's JSON for every answer: never NaN or Infinity

Strict means `app.strictjson`: finite numbers, valid Unicode, at most `MAX_DEPTH` levels of
nesting. A body that fails answers 400 naming the field (`events[2].data.total`), never a
500 further in. Content types are another layer's business: this reads the bytes.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

from flask import request
from flask.json.provider import DefaultJSONProvider

from app.errors import BadRequest
from app.models import JSON
from app.strictjson import MAX_DEPTH, JSONRejected, Path, loads, render_path

__all__ = ["MAX_DEPTH", "StrictJSONProvider", "parse", "request_object"]

log = logging.getLogger("stepline.api")

_BLANK_REFUSED = object()


def parse(
    raw: bytes,
    *,
    prefix: str | Callable[[Path], str] = "",
    blank: Any = _BLANK_REFUSED,
) -> JSON:
    """`raw` as strict JSON; `blank` (when given) stands for an empty body.

    A refusal is a BadRequest whose field is the problem's path under `prefix` (a string,
    or a function of the path for bodies whose shape decides it), or `body` at the root.
    """
    if blank is not _BLANK_REFUSED and not raw.strip():
        return blank
    try:
        return loads(raw)
    except JSONRejected as exc:
        if not exc.path:
            field = "body"
        else:
            field = render_path(exc.path, prefix(exc.path) if callable(prefix) else prefix)
        raise BadRequest(f"{field}: {exc.problem}", field=field) from None


def request_object(*, what: str = "the request body") -> dict[str, Any]:
    """The current request's body as a JSON object (an empty body is `{}`)."""
    parsed = parse(request.get_data(cache=True), blank={})
    if not isinstance(parsed, dict):
        raise BadRequest(f"{what} must be a JSON object", field="body")
    return parsed


class StrictJSONProvider(DefaultJSONProvider):
    """Answers are strict JSON: `allow_nan=False`, and bodies read back with the strict parser.

    Nothing accepted can hold a non-finite number; a record stored before that was checked
    is answered with `null` in its place (and a warning), never as `NaN` or a 500.
    """

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        kwargs.setdefault("allow_nan", False)
        try:
            return super().dumps(obj, **kwargs)
        except ValueError:  # "Out of range float values are not JSON compliant"
            log.warning("an answer held a non-finite number; it is sent as null")
            return super().dumps(_finite(obj), **kwargs)

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return loads(s)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value
