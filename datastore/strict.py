"""`StrictModel`: the pydantic base of every config and request model in every layer.

It forbids unknown keys itself, so a typo (``DatastoreConfig(shard_sizee=5)``, a misspelt key in a
config file or an ``OPENSCHOLAR_*`` variable) is an error wherever the model is used, not only once
some other module has been imported. It sits in the bottom layer so that every package can use it.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """A pydantic model that rejects unknown keys."""

    model_config = ConfigDict(extra="forbid")
