"""The engine behind the current request: `app.extensions["stepline"]`.

`create_app(engine)` puts the engine there; without one, the first request builds it from the
environment (`Settings.from_env()`), so importing or creating the app touches nothing.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, cast

from flask import Flask, current_app

if TYPE_CHECKING:
    from app.engine import Engine

log = logging.getLogger("stepline.api")

EXTENSION = "stepline"
_BUILD_LOCK = threading.Lock()


def current_engine() -> Engine:
    """The engine of the app handling the current request (built on first use)."""
    return engine_of(current_app)


def engine_of(app: Flask) -> Engine:
    """The engine of `app` (built on first use), outside a request context too."""
    extensions = app.extensions
    engine = extensions.get(EXTENSION)
    if engine is None:
        with _BUILD_LOCK:
            engine = extensions.get(EXTENSION)
            if engine is None:
                from app.config import Settings
                from app.engine import Engine

                engine = Engine.create(Settings.from_env())
                extensions[EXTENSION] = engine
    return cast("Engine", engine)


def ensure_engine() -> None:
    """Before each request: build the engine if needed, for views that read the extension
    directly. A failure is left to the view (health answers 503 rather than 500)."""
    if current_app.extensions.get(EXTENSION) is not None:
        return
    try:
        current_engine()
    except Exception:
        log.exception("could not build the engine")
