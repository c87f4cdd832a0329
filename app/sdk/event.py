"""`Event`: what triggers a function, what `wait_for_event` returns, what `send` takes."""

from __future__ import annotations

import time
from typing import Any

from pydantic import field_validator

from app import models
from app.models import JSON


class Event(models.Event):
    """An event: `name`, `data`, `id` (the user's idempotency id), `ts` (ms), `user`, `v`."""

    @field_validator("data", "user", mode="before")
    @classmethod
    def _null_is_empty(cls, value: Any) -> Any:
        return {} if value is None else value

    def to_dict(self) -> dict[str, JSON]:
        """The event as sent to the event API: no empty `id`, `ts` defaulted to now."""
        out: dict[str, JSON] = {"name": self.name, "data": self.data, "user": self.user}
        if self.id:
            out["id"] = self.id
        out["ts"] = self.ts or int(time.time() * 1000)
        if self.v is not None:
            out["v"] = self.v
        return out
