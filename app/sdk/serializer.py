"""Step and function outputs that are not plain JSON, as the official SDK handles them.

Give the client a serializer (`Inngest(serializer=inngest.PydanticSerializer())`) and name the
type where a value leaves your code: `step.run(..., output_type=Order)` or
`create_function(..., output_type=Order)`. The value is stored as JSON (`serialize`) and handed
back as that type (`deserialize`), on replay and right after the step runs. Without a
serializer, or without `output_type`, values pass through unchanged (and must be JSON), exactly
as in the official SDK 0.5.19.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Final, Protocol

from pydantic import TypeAdapter


class _Unset:
    def __repr__(self) -> str:
        return "<no output_type>"


NO_TYPE: Final = _Unset()
"""`output_type` left out: the value passes through the serializer untouched."""


class Serializer(Protocol):
    def serialize(self, obj: object, typ: object) -> object:
        """`obj` (of type `typ`) as JSON data (dict, list, str, ...)."""
        ...

    def deserialize(self, obj: object, typ: object) -> object:
        """JSON data back into a `typ`."""
        ...


class PydanticSerializer:
    """Pydantic models and any type pydantic can validate (dataclasses, `list[Model]` ...)."""

    MAX_ADAPTERS = 1024

    def __init__(self) -> None:
        self._adapters: OrderedDict[Any, TypeAdapter[Any]] = OrderedDict()
        self._lock = threading.Lock()

    def _adapter(self, typ: object) -> TypeAdapter[Any]:
        form: Any = typ  # any type pydantic understands: a class, `list[Model]`, a union ...
        try:
            hash(form)
        except TypeError:
            return TypeAdapter(form)
        with self._lock:
            adapter = self._adapters.get(form)
            if adapter is None:
                adapter = self._adapters[form] = TypeAdapter(form)
                if len(self._adapters) > self.MAX_ADAPTERS:
                    self._adapters.popitem(last=False)
            else:
                self._adapters.move_to_end(form)
            return adapter

    def serialize(self, obj: object, typ: object) -> object:
        return self._adapter(typ).dump_python(obj, mode="json")

    def deserialize(self, obj: object, typ: object) -> object:
        return self._adapter(typ).validate_python(obj)
