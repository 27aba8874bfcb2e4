"""The ``store:`` section of the engine settings."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from ivr.yamlloc import ConfigPath

__all__ = ["StoreSettings"]


class StoreSettings(BaseModel):
    """``store:`` section. ``path`` is relative to the config file's directory."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Defaults are validated too, so they resolve against the config file's directory.
    path: ConfigPath = Field(Path("var/switchhook.db"), validate_default=True)
    # Directory for audio the engine keeps (voicemails, recordings waiting for the CRM).
    audio_dir: ConfigPath = Field(Path("var/audio"), validate_default=True)
    # Upper bound on the database file; a write beyond it fails with reason "disk_full"
    # instead of filling the disk the audio also lives on. None: no cap.
    max_size_mb: int | None = Field(default=None, ge=1)
