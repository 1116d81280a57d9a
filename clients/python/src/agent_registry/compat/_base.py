"""What both compatible clients share: answers readable as attributes and as
dict items (the earlier clients handed out pydantic models in some places
and plain dicts in others; code written against either keeps working)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class LegacyModel(BaseModel):
    """A model that also answers ``m["field"]`` and ``m.get("field")``;
    fields the server adds beyond the declared ones are kept."""

    model_config = ConfigDict(extra="allow")

    def __getitem__(self, key: str) -> Any:
        try:
            return getattr(self, key)
        except AttributeError:
            raise KeyError(key) from None

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key, default)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and hasattr(self, key)
