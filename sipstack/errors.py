"""Error roots of the SIP stack.

Following h11: ``LocalProtocolError`` means *we* misused the API (a bug in the caller),
``RemoteProtocolError`` means the peer sent something we cannot accept; it carries the
status code and reason phrase to answer with when the message can be answered at all.
"""

from __future__ import annotations


class SipError(Exception):
    """Root of every error raised by :mod:`sipstack`."""


class LocalProtocolError(SipError):
    """The local application asked for something the protocol forbids (a programming error)."""


class RemoteProtocolError(SipError):
    """The peer sent something that violates the protocol.

    ``status_code``/``reason`` say how to answer a request that caused it (RFC 3261 §21.4).
    """

    def __init__(self, message: str, *, status_code: int = 400, reason: str | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.reason = reason or message


class ParseError(RemoteProtocolError):
    """A message could not be parsed.

    ``answerable`` holds the request's raw start line and the headers needed to build a
    response (Via, From, To, Call-ID, CSeq) when those could be recovered; a transport then
    answers ``status_code`` with ``reason`` instead of silently dropping the datagram.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int = 400,
        reason: str | None = None,
        answerable: object | None = None,
    ) -> None:
        super().__init__(message, status_code=status_code, reason=reason)
        self.answerable = answerable
