"""What every event is: a frozen model with a ``type`` discriminator; and the reference to a
stored artifact version events carry."""

from __future__ import annotations

from pydantic import ConfigDict

from stageflow.base import Model

__all__ = ["ArtifactRef"]


class _Event(Model):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ArtifactRef(Model):
    """A stored artifact version, as referenced from the log (content lives in the store)."""

    model_config = ConfigDict(frozen=True)

    name: str
    version: int
    size: int
    sha256: str
