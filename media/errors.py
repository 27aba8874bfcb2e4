"""Error hierarchy of the media plane: one root, converted at the package boundary."""

from __future__ import annotations

__all__ = [
    "BridgeError",
    "CodecError",
    "DtmfError",
    "MediaError",
    "PortsExhausted",
    "PromptError",
    "RecorderError",
    "RtcpParseError",
    "RtpParseError",
]


class MediaError(Exception):
    """Root of every error raised by :mod:`media`."""


class RtpParseError(MediaError):
    """An RTP datagram violates RFC 3550 §5.1 (short, wrong version, bad padding, overrun)."""


class RtcpParseError(RtpParseError):
    """An RTCP (compound) packet violates RFC 3550 §6."""


class DtmfError(MediaError):
    """A telephone-event payload (RFC 4733 §2.3) is malformed, or a digit is unknown."""


class CodecError(MediaError):
    """A codec name or payload type is not supported."""


class PromptError(MediaError):
    """A prompt could not be loaded, decoded or rendered (missing, unreadable, undecodable)."""


class PortsExhausted(MediaError):
    """No even RTP port (with RTCP on port+1) is free in the configured range."""


class BridgeError(MediaError):
    """A bridge or tap was misused (leg without a negotiated codec, unknown tap, stopped)."""


class RecorderError(MediaError):
    """A recording could not be written (disk full, I/O error); the recording has stopped.

    Raised once per recorder, at the first failure; later writes are ignored.
    """
