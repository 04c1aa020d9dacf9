"""``Model``: the pydantic base of stageflow's data models.

Its schemas are built on first use (``defer_build``), not when a module is imported: importing
stageflow then costs little, and the stdio server answers ``initialize`` before any of the
dozens of event, view and result models is built. Behaviour is the same either way.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Model(BaseModel):
    """A ``BaseModel`` whose schema is built on first use."""

    model_config = ConfigDict(defer_build=True)
