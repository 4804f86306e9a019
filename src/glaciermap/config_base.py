"""Base class of every typed config object (params.yaml is validated once, at the edge)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """Frozen pydantic model that rejects unknown keys, so a typo is an error naming the key."""

    model_config = ConfigDict(extra="forbid", frozen=True)
