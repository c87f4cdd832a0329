"""Store verbs for what is registered: apps, their function configs, and cron cursors."""

from __future__ import annotations

import hashlib
import json

from app.ids import new_ulid
from app.models import JSON, FunctionConfig
from app.state.base import StoreBase, _dumps, _opt_int


class RegistryVerbs(StoreBase):
    """Part of `Store`: the function registry and cron bookkeeping."""

    # --- functions and apps -------------------------------------------------------------
    def save_app(
        self,
        app_id: str,
        url: str | None,
        functions: list[FunctionConfig],
        now: int,
        *,
        sync_id: str | None = None,
        takeover: bool = True,
    ) -> bool:
        """Atomically replace the app's functions (functions it no longer has are removed).
        Returns True if anything changed; then the registry version (the key processes cache
        the functions under) becomes this sync's id.

        `takeover=False` (registrations over HTTP) refuses, with `Conflict` and nothing
        written, functions another app owns and apps served in-process; the check and the
        write are one Lua call. `sync_id` identifies this registration (a new one if None): a
        repeat of the call with the same id answers the first outcome."""
        configs = sorted(functions, key=lambda config: config.id)
        dumped = [(config.id, config.model_dump_json()) for config in configs]
        canonical = json.dumps(
            {"url": url, "functions": [config.model_dump(mode="json") for config in configs]},
            sort_keys=True,
            separators=(",", ":"),
        )
        checksum = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
        record = {
            "id": app_id,
            "url": url,
            "functions": [function_id for function_id, _ in dumped],
            "checksum": checksum,
            "synced_at": now,
        }
        return self._scripts.save_app(
            app_id, _dumps(record), checksum, sync_id or new_ulid(), takeover, dumped
        )

    def list_functions(self) -> list[FunctionConfig]:
        raw = self._client.hvals(self._keys.functions)
        configs = [FunctionConfig.model_validate_json(item) for item in raw]
        return sorted(configs, key=lambda config: config.id)

    def get_function(self, function_id: str) -> FunctionConfig | None:
        raw = self._client.hget(self._keys.functions, function_id)
        return None if raw is None else FunctionConfig.model_validate_json(raw)

    def registry_version(self) -> str:
        """The sync id of the last change to the functions ("" before any): a value is never
        used twice, even after Redis lost its data, so it is a safe cache key."""
        raw = self._client.get(self._keys.registry_version)
        return "" if raw is None else str(raw)

    def list_apps(self) -> list[dict[str, JSON]]:
        """App records: {"id", "url", "functions" (ids), "checksum", "synced_at"}."""
        apps = [json.loads(item) for item in self._client.hvals(self._keys.apps)]
        return sorted(apps, key=lambda app: str(app["id"]))

    # --- cron -----------------------------------------------------------------------------
    def claim_cron(self, function_id: str, scheduled_at: int, ttl_ms: int) -> bool:
        """True for exactly one claimer of (function, scheduled time)."""
        key = self._keys.cron_claim(function_id, scheduled_at)
        return bool(self._client.set(key, "1", nx=True, px=ttl_ms))

    def cron_cursor(self, function_id: str) -> int | None:
        return _opt_int(self._client.hget(self._keys.cron_cursor, function_id))

    def set_cron_cursor(self, function_id: str, scheduled_at: int) -> None:
        self._client.hset(self._keys.cron_cursor, function_id, str(scheduled_at))
