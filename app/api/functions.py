"""The functions and apps API.

GET  /v1/functions                  every registered function (`?app_id=` filters)
GET  /v1/functions/<function_id>    one function
GET  /v1/apps                       every registered app
POST /v1/apps/sync                  `{"url"}`: ask the app served there to register
POST /v1/apps/<app_id>/sync         sync a registered app again at its URL
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify

from app.api import params
from app.api.auth import Access, requires
from app.api.context import current_engine
from app.api.runs import iso
from app.errors import BadRequest, NotFound
from app.models import JSON, FunctionConfig
from app.sync import sync_app

bp = Blueprint("functions", __name__)


@bp.get("/v1/functions")
@requires(Access.OPERATOR)
def list_functions() -> Response:
    store = current_engine().store
    app_id = params.text("app_id")
    apps = _apps_by_id()
    functions = [fn for fn in store.list_functions() if app_id is None or fn.app_id == app_id]
    return jsonify({"data": [function_json(fn, apps.get(fn.app_id)) for fn in functions]})


@bp.get("/v1/functions/<function_id>")
@requires(Access.OPERATOR)
def get_function(function_id: str) -> Response:
    fn = current_engine().store.get_function(function_id)
    if fn is None:
        raise NotFound(f"function {function_id} not found", field="function_id")
    return jsonify({"data": function_json(fn, _apps_by_id().get(fn.app_id))})


@bp.get("/v1/apps")
@requires(Access.OPERATOR)
def list_apps() -> Response:
    return jsonify({"data": [app_json(app) for app in current_engine().store.list_apps()]})


@bp.post("/v1/apps/sync")
@requires(Access.OPERATOR)
def sync_by_url() -> Response:
    url = params.body().get("url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise BadRequest("url must be the app's http(s) serve URL", field="url")
    return _sync(url)


@bp.post("/v1/apps/<app_id>/sync")
@requires(Access.OPERATOR)
def sync_registered(app_id: str) -> Response:
    app = _apps_by_id().get(app_id)
    if app is None:
        raise NotFound(f"app {app_id} not found", field="app_id")
    url = app.get("url")
    if not isinstance(url, str) or not url:
        raise BadRequest(
            f"app {app_id} runs in-process (it has no URL); it syncs when its process starts",
            field="app_id",
        )
    return _sync(url)


def _sync(url: str) -> Response:
    reply = sync_app(url, current_engine().settings)
    app_id = reply.get("app_id")
    modified = reply.get("modified")
    return jsonify(
        {
            "data": {
                "url": url,
                "app_id": app_id if isinstance(app_id, str) else None,
                "modified": modified if isinstance(modified, bool) else None,
            }
        }
    )


def _apps_by_id() -> dict[str, dict[str, JSON]]:
    return {str(app["id"]): app for app in current_engine().store.list_apps()}


def function_json(fn: FunctionConfig, app: dict[str, JSON] | None) -> dict[str, JSON]:
    app = app or {}
    return {
        "id": fn.id,
        "name": fn.name,
        "app_id": fn.app_id,
        "triggers": [trigger.model_dump(mode="json") for trigger in fn.triggers],
        "options": fn.options,
        "retries": fn.retries,
        "driver": fn.driver,
        "url": fn.url,
        "app_url": _opt_str(app.get("url")),
        "last_synced_at": iso(app.get("synced_at")),
    }


def app_json(app: dict[str, Any]) -> dict[str, JSON]:
    functions = app.get("functions")
    return {
        "id": str(app["id"]),
        "url": _opt_str(app.get("url")),
        "functions": [str(fn) for fn in functions] if isinstance(functions, list) else [],
        "checksum": _opt_str(app.get("checksum")),
        "synced_at": iso(app.get("synced_at")),
    }


def _opt_str(value: JSON) -> str | None:
    return value if isinstance(value, str) and value else None
