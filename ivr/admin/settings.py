"""``monitoring:`` settings: dial-in feature codes, DTMF keys, calls to supervisors' phones,
the end-call confirmation and the automatic end of stuck calls."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["MonitoringSettings", "StuckCallSettings"]

Mode = Literal["listen", "coach", "barge"]
Code = Annotated[str, Field(pattern=r"^[*#0-9]{2,8}$")]
Key = Annotated[str, Field(pattern=r"^[*#0-9]$")]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StuckCallSettings(_Model):
    """End calls queued or connected for longer than a threshold (recorded with the reason
    in the audit trail as done by ``system``)."""

    enabled: bool = False
    queued_seconds: float = Field(5 * 3600, gt=0)
    connected_seconds: float = Field(5 * 3600, gt=0)
    check_every_seconds: float = Field(60, gt=0, le=3600)


class MonitoringSettings(_Model):
    # A supervisor's phone dials <feature_code><agent id> (digest-authenticated), or any
    # caller dials <pin_feature_code><agent id> and then keys <extension>*<pin>#.
    feature_code: Code = "*55"
    pin_feature_code: Code = "*56"
    realm: Annotated[str, Field(min_length=1, max_length=64)] = "switchhook"
    # Digest algorithms offered to supervisors' phones, in order of preference (RFC 8760).
    sip_algorithms: tuple[Literal["SHA-256", "MD5"], ...] = ("SHA-256", "MD5")
    mode_keys: dict[Key, Mode] = Field(
        default_factory=lambda: {"1": "listen", "2": "coach", "3": "barge"}
    )
    next_key: Key = "*"  # move to the next monitorable call
    ring_timeout_seconds: float = Field(30, gt=0, le=300)
    from_uri: Annotated[str, Field(pattern=r"^sips?:\S+$")] = "sip:monitor@switchhook.invalid"
    max_monitors_per_call: int = Field(0, ge=0)  # 0: no limit
    confirm_ttl_seconds: float = Field(60, gt=0, le=3600)  # end-call confirmation token
    stuck_calls: StuckCallSettings = StuckCallSettings()
