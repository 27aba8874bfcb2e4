"""User-agent core (RFC 3261 §8, §9, §12-§15), sans-IO, stacked on the transaction layer.

It turns transaction events into a small call-control vocabulary about *legs* (one leg per
INVITE-initiated dialog, in the manner of sippy's UA objects) and takes commands from the
application: ring, answer, reject, hang up, send in-dialog requests, place calls. It
implements what every UA must do by itself: 100 Trying, CANCEL/487 (§9.2), 2xx
retransmission until ACK and BYE after 64*T1 without one (§13.3.1.4), ACK for 2xx on the UAC
side (§13.2.2.4), 481 for unknown dialogs (§12.2.2), 420 for unsupported Require (§8.2.2.3),
405 for unknown methods (§8.2.1), overlapping re-INVITEs (§14.2), OPTIONS (§11.2).

Like :mod:`sipstack.transaction` it reads no clock and opens no socket: bytes + flow + ``now``
come in, :class:`~sipstack.transaction.Outgoing` datagrams and events go out.
"""

from __future__ import annotations

import enum
import random
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import cast

from . import auth
from . import transaction as tx
from .dialog import Dialog
from .errors import LocalProtocolError, ParseError, RemoteProtocolError, SipError
from .message import (
    DEFAULT_LIMITS,
    Answerable,
    Limits,
    Request,
    Response,
    make_response,
    parse_message,
)
from .timers import TimerHeap, TimerSettings
from .transaction import Flow, Outgoing, TransactionLayer
from .uri import NameAddr

Headers = Iterable[tuple[str, str]]


# ---------------------------------------------------------------------------------------------
# Events for the application
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class InviteReceived:
    """A new call: an out-of-dialog INVITE. Answer with ring/answer/reject."""

    leg_id: int
    request: Request
    flow: Flow
    received_at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class InviteCancelled:
    """The caller sent CANCEL before we answered; 200 and 487 were already sent (§9.2)."""

    leg_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class CallEstablished:
    """UAS: the ACK for our 2xx arrived. UAC: the 2xx arrived and was ACKed."""

    leg_id: int
    response: Response | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ProgressReceived:
    """UAC: a provisional response to our INVITE."""

    leg_id: int
    response: Response


@dataclass(frozen=True, slots=True, kw_only=True)
class CallFailed:
    """UAC: the INVITE got a final error response or timed out (status 408)."""

    leg_id: int
    status_code: int
    reason: str
    response: Response | None = None


class EndedBy(enum.Enum):
    REMOTE = "remote"  # BYE received
    LOCAL = "local"  # our BYE completed (or timed out)
    NO_ACK = "no-ack"  # §13.3.1.4: 2xx never acknowledged; we sent BYE


@dataclass(frozen=True, slots=True, kw_only=True)
class CallTerminated:
    leg_id: int
    ended_by: EndedBy
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ReinviteReceived:
    """A re-INVITE in an established dialog; answer with :meth:`UserAgent.respond`."""

    leg_id: int
    transaction_id: int
    request: Request


@dataclass(frozen=True, slots=True, kw_only=True)
class InDialogRequestReceived:
    """INFO, REFER, NOTIFY, MESSAGE, UPDATE within a dialog; answer with ``respond``."""

    leg_id: int
    transaction_id: int
    request: Request


@dataclass(frozen=True, slots=True, kw_only=True)
class InDialogResponseReceived:
    """Final response to a request we sent in a dialog (re-INVITE, REFER, INFO...)."""

    leg_id: int
    method: str
    response: Response | None
    timed_out: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestReceived:
    """An out-of-dialog request other than INVITE/CANCEL/ACK (OPTIONS, REGISTER, ...)."""

    transaction_id: int
    request: Request
    flow: Flow
    received_at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageRejected:
    """A malformed message: answered with ``status_code`` when ``answered``, else dropped."""

    flow: Flow
    error: str
    status_code: int
    answered: bool


Event = (
    InviteReceived
    | InviteCancelled
    | CallEstablished
    | ProgressReceived
    | CallFailed
    | CallTerminated
    | ReinviteReceived
    | InDialogRequestReceived
    | InDialogResponseReceived
    | RequestReceived
    | MessageRejected
)


# ---------------------------------------------------------------------------------------------
# Legs
# ---------------------------------------------------------------------------------------------


class LegState(enum.Enum):
    INCOMING = "incoming"  # UAS: INVITE received, nothing sent but 100
    EARLY = "early"  # UAS: 1xx sent / UAC: 1xx received
    CALLING = "calling"  # UAC: INVITE sent
    ANSWERED = "answered"  # UAS: 2xx sent, waiting for ACK
    CONFIRMED = "confirmed"
    TERMINATING = "terminating"  # BYE sent, waiting for its response
    TERMINATED = "terminated"


class LegCause(enum.Enum):
    """Why a leg moves: what the UA sent or received (the inputs of :data:`LEG_TRANSITIONS`)."""

    SENT_1XX = "sent 1xx"  # UAS: ring()
    SENT_2XX = "sent 2xx"  # UAS: answer()
    SENT_FAILURE = "sent 3xx-6xx"  # UAS: reject(), or hangup() before answering
    GOT_CANCEL = "got CANCEL"  # UAS: 487 sent (§9.2)
    GOT_ACK = "got ACK"  # UAS: the ACK for our 2xx
    NO_ACK = "no ACK"  # UAS: 64*T1 of 2xx retransmissions without an ACK (§13.3.1.4)
    GOT_1XX = "got 1xx"  # UAC
    GOT_2XX = "got 2xx"  # UAC: the first 2xx (ACKed by the UA)
    GOT_FAILURE = "got 3xx-6xx"  # UAC (a challenge the UA answers is not one)
    TIMED_OUT = "INVITE timed out"  # UAC: Timer B
    SENT_BYE = "sent BYE"
    GOT_BYE = "got BYE"
    BYE_ANSWERED = "BYE answered"  # our BYE got its final response
    BYE_TIMED_OUT = "BYE timed out"  # our BYE got none (Timer F)
    ABORTED = "aborted"  # the request driving the leg could not be processed (error sent)


L, C = LegState, LegCause
#: (state, cause) -> next state: the one table for legs (per STYLE.md); anything else raises
#: LocalProtocolError from :meth:`Leg.move`, its only writer.
LEG_TRANSITIONS: Mapping[tuple[LegState, LegCause], LegState] = MappingProxyType(
    {
        # ---- UAS (§13.3.1) ----------------------------------------------------------------
        (L.INCOMING, C.SENT_1XX): L.EARLY,
        (L.EARLY, C.SENT_1XX): L.EARLY,
        (L.INCOMING, C.SENT_2XX): L.ANSWERED,
        (L.EARLY, C.SENT_2XX): L.ANSWERED,
        (L.INCOMING, C.SENT_FAILURE): L.TERMINATED,
        (L.EARLY, C.SENT_FAILURE): L.TERMINATED,
        # §9.2: "the UAS SHOULD respond to the INVITE with a 487 (Request Terminated)."
        (L.INCOMING, C.GOT_CANCEL): L.TERMINATED,
        (L.EARLY, C.GOT_CANCEL): L.TERMINATED,
        (L.ANSWERED, C.GOT_ACK): L.CONFIRMED,
        # §13.3.1.4: "If the server retransmits the 2xx response for 64*T1 seconds without
        # receiving an ACK, the dialog is confirmed, but the session SHOULD be terminated.
        # This is accomplished with a BYE" (SENT_BYE follows).
        (L.ANSWERED, C.NO_ACK): L.CONFIRMED,
        # ---- UAC (§13.2.2) ----------------------------------------------------------------
        (L.CALLING, C.GOT_1XX): L.EARLY,
        (L.EARLY, C.GOT_1XX): L.EARLY,
        (L.CALLING, C.GOT_2XX): L.CONFIRMED,
        (L.EARLY, C.GOT_2XX): L.CONFIRMED,
        (L.CALLING, C.GOT_FAILURE): L.TERMINATED,
        (L.EARLY, C.GOT_FAILURE): L.TERMINATED,
        (L.CALLING, C.TIMED_OUT): L.TERMINATED,
        (L.EARLY, C.TIMED_OUT): L.TERMINATED,
        # ---- both sides (§15) -------------------------------------------------------------
        # BYE is only sent once confirmed: §15 "the callee's UA MUST NOT send a BYE on a
        # confirmed dialog until it has received an ACK for its 2xx response or until the
        # server transaction times out" (hangup() in ANSWERED waits, see bye_pending).
        (L.CONFIRMED, C.SENT_BYE): L.TERMINATING,
        # The caller may send BYE before its ACK arrived (ANSWERED), or while our own BYE is
        # on its way (TERMINATING).
        (L.ANSWERED, C.GOT_BYE): L.TERMINATED,
        (L.CONFIRMED, C.GOT_BYE): L.TERMINATED,
        (L.TERMINATING, C.GOT_BYE): L.TERMINATED,
        (L.TERMINATING, C.BYE_ANSWERED): L.TERMINATED,
        (L.TERMINATING, C.BYE_TIMED_OUT): L.TERMINATED,
        **{(state, C.ABORTED): L.TERMINATED for state in L if state is not L.TERMINATED},
    }
)
del L, C


@dataclass(slots=True, eq=False)
class Leg:
    id: int
    uas: bool
    invite: Request
    flow: Flow
    state: LegState
    local_tag: str
    invite_transaction: int | None = None
    dialog: Dialog | None = None
    bye_pending: bool = False  # hang-up asked while waiting for the ACK (§15)
    cancel_pending: bool = False  # UAC: CANCEL asked before any provisional (§9.1)
    cancelled: bool = False
    pending_reinvite: int | None = None  # server transaction of a re-INVITE in progress
    reinvite: Request | None = None  # our last re-INVITE (its 2xx needs an ACK)
    credentials: tuple[str, str] | None = None  # UAC: (username, password) for challenges
    auth_attempts: int = 0
    client_requests: dict[int, str] = field(default_factory=dict)  # txn id -> method

    def move(self, cause: LegCause) -> LegState:
        """Take the :data:`LEG_TRANSITIONS` row for ``cause`` (the only writer of ``state``)."""
        state = LEG_TRANSITIONS.get((self.state, cause))
        if state is None:
            raise LocalProtocolError(
                f"leg {self.id}: no move from {self.state.value} on {cause.value}"
            )
        self.state = state
        return state


@dataclass(slots=True)
class _Pending2xx:
    """§13.3.1.4: a 2xx to an INVITE being retransmitted until its ACK arrives."""

    leg_id: int
    data: bytes
    flow: Flow
    interval: float
    give_up_at: float


@dataclass(frozen=True, slots=True)
class UaSettings:
    user_agent: str = "switchhook/0.1"
    allow: tuple[str, ...] = (
        "INVITE",
        "ACK",
        "CANCEL",
        "BYE",
        "OPTIONS",
        "INFO",
        "REFER",
        "NOTIFY",
        "REGISTER",
    )
    accept: tuple[str, ...] = ("application/sdp", "application/dtmf-relay")
    supported: tuple[str, ...] = ()
    contact_user: str = "switchhook"
    advertised_host: str | None = None  # host for Via/Contact when it differs from the local


_IN_DIALOG_TO_APP = frozenset(
    {"INFO", "REFER", "NOTIFY", "MESSAGE", "UPDATE", "PRACK", "SUBSCRIBE"}
)


class UserAgent:
    """A SIP user agent (UAS and UAC) over one :class:`TransactionLayer`."""

    def __init__(
        self,
        *,
        rng: random.Random,
        timers: TimerSettings | None = None,
        settings: UaSettings | None = None,
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        self.rng = rng
        self.timers = timers or TimerSettings()
        self.settings = settings or UaSettings()
        self.limits = limits
        self.transactions = TransactionLayer(self.timers)
        self._events: deque[Event] = deque()
        self._legs: dict[int, Leg] = {}
        self._legs_by_dialog: dict[tuple[str, str, str], int] = {}
        self._leg_by_server_txn: dict[int, int] = {}
        self._leg_by_client_txn: dict[int, int] = {}
        self._pending_2xx: dict[tuple[str, int], _Pending2xx] = {}
        self._heap = TimerHeap()
        self._next_leg = 1

    # ---- adapter side -----------------------------------------------------------------------

    def receive_datagram(self, data: bytes, flow: Flow, now: float) -> None:
        """Feed one datagram (or one framed stream message). Never raises for peer input."""
        if not data.strip(b"\r\n"):
            return  # keep-alive (RFC 5626 §4.4.1 CRLF ping)
        try:
            message = parse_message(data, self.limits)
        except ParseError as exc:
            self._reject_malformed(exc, flow)
            return
        try:
            if isinstance(message, Request):
                tx.stamp_via(message, flow)
                self.transactions.receive_request(message, flow, now)
            else:
                self.transactions.receive_response(message, flow, now)
            self._drain_transactions(now)
        except SipError as exc:
            status = exc.status_code if isinstance(exc, RemoteProtocolError) else 500
            self._events.append(
                MessageRejected(flow=flow, error=str(exc), status_code=status, answered=False)
            )

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def datagrams_to_send(self) -> list[Outgoing]:
        return self.transactions.datagrams_to_send()

    def get_timer(self) -> float | None:
        deadlines = [
            d for d in (self._heap.next_deadline(), self.transactions.get_timer()) if d is not None
        ]
        return min(deadlines) if deadlines else None

    def handle_timer(self, now: float) -> None:
        self.transactions.handle_timer(now)
        for key in self._heap.pop_due(now):
            kind, ident = cast(tuple[str, tuple[str, int]], key)
            if kind == "2xx":
                self._retransmit_2xx(ident, now)
        self._drain_transactions(now)

    def leg(self, leg_id: int) -> Leg | None:
        return self._legs.get(leg_id)

    @property
    def leg_count(self) -> int:
        return len(self._legs)

    # ---- commands: UAS ----------------------------------------------------------------------

    def ring(
        self,
        leg_id: int,
        now: float,
        *,
        status_code: int = 180,
        body: bytes = b"",
        content_type: str = "application/sdp",
        headers: Headers = (),
    ) -> None:
        leg = self._uas_leg(leg_id)
        if not 100 < status_code < 200:
            raise LocalProtocolError("ring() sends a provisional response")
        extra = [*headers, ("Contact", self._contact(leg.flow))]
        if body:
            extra.append(("Content-Type", content_type))
        self._respond_invite(leg, status_code, None, extra, body, now)
        leg.move(LegCause.SENT_1XX)

    def answer(
        self,
        leg_id: int,
        body: bytes,
        now: float,
        *,
        content_type: str = "application/sdp",
        headers: Headers = (),
    ) -> None:
        """Send 2xx and keep retransmitting it until ACK (§13.3.1.4)."""
        leg = self._uas_leg(leg_id)
        contact = self._contact(leg.flow)
        extra = [*headers, ("Contact", contact), ("Content-Type", content_type)]
        response = self._respond_invite(leg, 200, None, extra, body, now)
        leg.dialog = Dialog.as_uas(
            leg.invite,
            local_tag=leg.local_tag,
            flow=leg.flow,
            local_contact=contact,
            local_seq=self.rng.randrange(1, 2**16),
        )
        self._legs_by_dialog[_dialog_key(leg.dialog)] = leg.id
        leg.move(LegCause.SENT_2XX)
        self._start_2xx_retransmission(leg, response, now)

    def reject(
        self,
        leg_id: int,
        status_code: int,
        now: float,
        *,
        reason: str | None = None,
        headers: Headers = (),
    ) -> None:
        leg = self._uas_leg(leg_id)
        if status_code < 300:
            raise LocalProtocolError("reject() needs a 3xx-6xx status")
        self._respond_invite(leg, status_code, reason, list(headers), b"", now)
        self._end_leg(leg, LegCause.SENT_FAILURE)

    def respond(
        self,
        transaction_id: int,
        status_code: int,
        now: float,
        *,
        reason: str | None = None,
        headers: Headers = (),
        body: bytes = b"",
        content_type: str | None = None,
    ) -> None:
        """Answer a server transaction reported by RequestReceived, ReinviteReceived or
        InDialogRequestReceived."""
        txn = self.transactions.get(transaction_id)
        if txn is None or txn.request is None:
            raise LocalProtocolError(f"no server transaction {transaction_id} to answer")
        request, flow = txn.request, txn.flow  # the transaction releases it on a final
        extra = list(headers)
        if body and content_type:
            extra.append(("Content-Type", content_type))
        leg_id = self._leg_by_server_txn.get(transaction_id)
        leg = self._legs.get(leg_id) if leg_id is not None else None
        to_tag = request.to.tag
        if to_tag is None:
            to_tag = self._new_tag()
        if request.method == "INVITE" and leg is not None and 200 <= status_code < 300:
            extra.append(("Contact", self._contact(leg.flow)))
        response = make_response(
            request,
            status_code,
            reason,
            to_tag=to_tag,
            headers=self._common_headers(extra),
            body=body,
        )
        self.transactions.send_response(transaction_id, response, now)
        if status_code >= 200:
            self._leg_by_server_txn.pop(transaction_id, None)
            if leg is not None and request.method == "INVITE":
                leg.pending_reinvite = None
                if status_code < 300:
                    self._start_2xx_retransmission(leg, response, now, request=request, flow=flow)
        self._drain_transactions(now)

    def options_headers(self) -> list[tuple[str, str]]:
        """§11.2: what an OPTIONS 200 advertises."""
        out = [
            ("Allow", ", ".join(self.settings.allow)),
            ("Accept", ", ".join(self.settings.accept)),
        ]
        if self.settings.supported:
            out.append(("Supported", ", ".join(self.settings.supported)))
        return out

    # ---- commands: both sides ---------------------------------------------------------------

    def hangup(self, leg_id: int, now: float, *, reason: str | None = None) -> None:
        """End a leg whatever its state: reject/CANCEL before answer, BYE after (§15)."""
        leg = self._legs.get(leg_id)
        if leg is None or leg.state in (LegState.TERMINATING, LegState.TERMINATED):
            return
        if leg.uas and leg.state in (LegState.INCOMING, LegState.EARLY):
            self.reject(leg_id, 480, now, headers=_reason_header(reason))
            return
        if not leg.uas and leg.state in (LegState.CALLING, LegState.EARLY):
            self.cancel(leg_id, now)
            return
        if leg.state is LegState.ANSWERED:
            # §15: the callee MUST NOT send BYE before the ACK arrives (or 64*T1 passes).
            leg.bye_pending = True
            return
        self._send_bye(leg, now, reason)

    def send_in_dialog(
        self,
        leg_id: int,
        method: str,
        now: float,
        *,
        headers: Headers = (),
        body: bytes = b"",
        content_type: str | None = None,
    ) -> int:
        """Send INFO, REFER, NOTIFY or a re-INVITE in the leg's dialog."""
        leg = self._legs.get(leg_id)
        if leg is None or leg.dialog is None or leg.state is not LegState.CONFIRMED:
            raise LocalProtocolError(f"leg {leg_id} has no confirmed dialog")
        request = leg.dialog.build_request(method, via=self._via(leg.dialog.flow))
        self._finish_request(request, headers, body, content_type)
        txn_id = self.transactions.send_request(request, self._dialog_flow(leg.dialog), now)
        leg.client_requests[txn_id] = method
        self._leg_by_client_txn[txn_id] = leg.id
        if method == "INVITE":
            leg.reinvite = request
        return txn_id

    # ---- commands: UAC ----------------------------------------------------------------------

    def invite(
        self,
        *,
        request_uri: str,
        from_uri: str,
        to_uri: str,
        flow: Flow,
        now: float,
        body: bytes = b"",
        content_type: str = "application/sdp",
        headers: Headers = (),
        call_id: str | None = None,
        credentials: tuple[str, str] | None = None,
    ) -> int:
        """Place a call (§13.2.1). Returns the leg id; events tell what happens.

        With ``credentials`` (username, password), a 401/407 challenge is answered once by
        re-sending the INVITE with the same Call-ID and From tag, CSeq + 1 and an
        Authorization/Proxy-Authorization header (§22.2, §22.3); again when the server says
        ``stale=true``."""
        local_tag = self._new_tag()
        request = Request(method="INVITE", uri=request_uri)
        h = request.headers
        h.add("Via", self._via(flow))
        h.add("Max-Forwards", "70")
        h.add("From", str(NameAddr.parse(from_uri).with_tag(local_tag)))
        h.add("To", to_uri)
        h.add("Call-ID", call_id or f"{self.rng.getrandbits(96):024x}")
        h.add("CSeq", f"{self.rng.randrange(1, 2**16)} INVITE")
        h.add("Contact", self._contact(flow))
        h.add("Allow", ", ".join(self.settings.allow))
        self._finish_request(request, headers, body, content_type if body else None)
        leg = Leg(self._next_leg, False, request, flow, LegState.CALLING, local_tag)
        leg.credentials = credentials
        self._next_leg += 1
        self._legs[leg.id] = leg
        txn_id = self.transactions.send_request(request, flow, now)
        leg.invite_transaction = txn_id
        self._leg_by_client_txn[txn_id] = leg.id
        return leg.id

    def cancel(self, leg_id: int, now: float) -> None:
        """§9.1: CANCEL a pending INVITE (deferred until a provisional response arrived)."""
        leg = self._legs.get(leg_id)
        if leg is None or leg.uas or leg.state not in (LegState.CALLING, LegState.EARLY):
            return
        if leg.state is LegState.CALLING:
            leg.cancel_pending = True
            return
        leg.cancelled = True
        invite = leg.invite
        cancel = Request(method="CANCEL", uri=invite.uri)
        h = cancel.headers
        h.add("Via", invite.headers.get_all("Via")[0])  # §9.1: same top Via as the INVITE
        h.add("Max-Forwards", "70")
        for name in ("From", "To", "Call-ID"):
            h.add(name, invite.headers.get(name) or "")
        h.add("CSeq", f"{invite.cseq.number} CANCEL")
        for route in invite.headers.get_all("Route"):
            h.add("Route", route)
        self._common_headers_into(cancel)
        self.transactions.send_request(cancel, leg.flow, now)
        if leg.invite_transaction is not None:
            self.transactions.cancel_sent(leg.invite_transaction, now)

    # ---- transaction events -----------------------------------------------------------------

    def _drain_transactions(self, now: float) -> None:
        while (event := self.transactions.next_event()) is not None:
            try:
                self._on_transaction_event(event, now)
            except RemoteProtocolError as exc:
                flow = getattr(event, "flow", None)
                if isinstance(event, tx.RequestReceived):
                    self._answer_error(event.transaction_id, exc.status_code, exc.reason, now)
                if flow is not None:
                    self._events.append(
                        MessageRejected(
                            flow=flow,
                            error=str(exc),
                            status_code=exc.status_code,
                            answered=isinstance(event, tx.RequestReceived),
                        )
                    )

    def _on_transaction_event(self, event: tx.TransactionEvent, now: float) -> None:
        if isinstance(event, tx.RequestReceived):
            self._on_request(event, now)
        elif isinstance(event, tx.AckReceived):
            self._on_ack(event.request, now)
        elif isinstance(event, tx.ResponseReceived):
            self._on_response(event, now)
        elif isinstance(event, tx.TransactionTimedOut):
            self._on_timeout(event, now)
        elif isinstance(event, tx.TransactionTerminated):
            self._leg_by_server_txn.pop(event.transaction_id, None)
            if not event.server:
                self._forget_client_txn(event.transaction_id)

    def _on_request(self, event: tx.RequestReceived, now: float) -> None:
        request, tid = event.request, event.transaction_id
        method = request.method
        if method not in self.settings.allow:
            self.respond(tid, 405, now, headers=[("Allow", ", ".join(self.settings.allow))])
            return
        if request.request_uri.headers:  # 416 for unsupported schemes (§8.2.2.1)
            # §19.1.1 Table 1: headers are not allowed in a Request-URI (RFC 4475 escruri).
            raise RemoteProtocolError("headers in the Request-URI", reason="Bad Request-URI")
        if method not in ("CANCEL",):
            unsupported = [
                opt
                for opt in _options(request.headers.get_all("Require"))
                if opt not in self.settings.supported
            ]
            if unsupported:
                # §8.2.2.3: 420 listing what we do not support.
                self.respond(tid, 420, now, headers=[("Unsupported", ", ".join(unsupported))])
                return
        to_tag = request.to.tag
        if method == "CANCEL":
            self._on_cancel(request, tid, now)
        elif to_tag:
            self._on_in_dialog(request, tid, now)
        elif method == "INVITE":
            self._on_new_invite(event, now)
        else:
            self._events.append(
                RequestReceived(
                    transaction_id=tid, request=request, flow=event.flow, received_at=now
                )
            )

    def _on_new_invite(self, event: tx.RequestReceived, now: float) -> None:
        request = event.request
        if not request.contacts:
            raise RemoteProtocolError("INVITE without Contact", reason="Missing Contact")
        # §8.2.6.1 / §17.2.1: send 100 Trying right away so the caller stops retransmitting.
        trying = make_response(request, 100, headers=self._common_headers(()))
        self.transactions.send_response(event.transaction_id, trying, now)
        leg = Leg(
            self._next_leg,
            True,
            request,
            event.flow,
            LegState.INCOMING,
            self._new_tag(),
            invite_transaction=event.transaction_id,
        )
        self._next_leg += 1
        self._legs[leg.id] = leg
        self._leg_by_server_txn[event.transaction_id] = leg.id
        self._events.append(
            InviteReceived(leg_id=leg.id, request=request, flow=event.flow, received_at=now)
        )

    def _on_cancel(self, request: Request, tid: int, now: float) -> None:
        invite_txn = self.transactions.find_invite_server_transaction(request)
        if invite_txn is None:
            self.respond(tid, 481, now)  # §9.2
            return
        self.respond(tid, 200, now)
        leg_id = self._leg_by_server_txn.get(invite_txn.id)
        leg = self._legs.get(leg_id) if leg_id is not None else None
        if (
            leg is not None
            and leg.invite_transaction == invite_txn.id
            and leg.state in (LegState.INCOMING, LegState.EARLY)
        ):
            # §9.2: the UAS SHOULD respond to the INVITE with 487 (Request Terminated).
            self._respond_invite(leg, 487, None, [], b"", now)
            self._end_leg(leg, LegCause.GOT_CANCEL)
            self._events.append(InviteCancelled(leg_id=leg.id))

    def _on_in_dialog(self, request: Request, tid: int, now: float) -> None:
        leg = self._find_leg(request)
        if leg is None or leg.dialog is None:
            self.respond(tid, 481, now)  # §12.2.2
            return
        dialog = leg.dialog
        cseq = request.cseq.number
        if dialog.remote_seq is not None and cseq < dialog.remote_seq:
            self.respond(tid, 500, now, reason="CSeq Out of Order")  # §12.2.2
            return
        dialog.remote_seq = cseq
        method = request.method
        if method == "BYE":
            self.respond(tid, 200, now)
            self._stop_2xx_for_leg(leg)
            self._end_leg(leg, LegCause.GOT_BYE)
            self._events.append(
                CallTerminated(leg_id=leg.id, ended_by=EndedBy.REMOTE, reason="BYE")
            )
            return
        if method == "INVITE":
            if leg.pending_reinvite is not None:
                # §14.2: an INVITE while one is pending -> 500 with Retry-After 0-10 s.
                self.respond(
                    tid, 500, now, headers=[("Retry-After", str(self.rng.randrange(0, 11)))]
                )
                return
            if any(m == "INVITE" for m in leg.client_requests.values()):
                self.respond(tid, 491, now)  # §14.2: glare
                return
            contacts = request.contacts
            if contacts:
                dialog.remote_target = contacts[0].uri  # §12.2.2 target refresh
            leg.pending_reinvite = tid
            self._leg_by_server_txn[tid] = leg.id
            self._events.append(
                ReinviteReceived(leg_id=leg.id, transaction_id=tid, request=request)
            )
            return
        if method in _IN_DIALOG_TO_APP:
            self._leg_by_server_txn[tid] = leg.id
            self._events.append(
                InDialogRequestReceived(leg_id=leg.id, transaction_id=tid, request=request)
            )
            return
        self.respond(tid, 405, now, headers=[("Allow", ", ".join(self.settings.allow))])

    def _on_ack(self, ack: Request, now: float) -> None:
        leg = self._find_leg(ack)
        if leg is None:
            return  # stray ACK: nothing to answer (§17.2.3)
        pending = self._pending_2xx.pop((ack.call_id, ack.cseq.number), None)
        if pending is None:
            return  # retransmitted ACK
        self._heap.cancel(("2xx", (ack.call_id, ack.cseq.number)))
        if leg.state is LegState.ANSWERED:
            leg.move(LegCause.GOT_ACK)
            self._events.append(CallEstablished(leg_id=leg.id))
            if leg.bye_pending:
                self._send_bye(leg, now, None)

    def _on_response(self, event: tx.ResponseReceived, now: float) -> None:
        response = event.response
        if event.transaction_id is None:
            self._reack_2xx(response, now)
            return
        leg_id = self._leg_by_client_txn.get(event.transaction_id)
        leg = self._legs.get(leg_id) if leg_id is not None else None
        if leg is None:
            return
        method = leg.client_requests.get(event.transaction_id)
        if event.transaction_id == leg.invite_transaction:
            self._on_invite_response(leg, response, event.flow, now)
        elif method == "BYE":
            if response.status_code >= 200:
                self._end_leg(leg, LegCause.BYE_ANSWERED)
                self._events.append(
                    CallTerminated(
                        leg_id=leg.id, ended_by=EndedBy.LOCAL, reason=f"BYE {response.status_code}"
                    )
                )
        elif method is not None and response.status_code >= 200:
            if method == "INVITE" and response.status_code < 300 and leg.dialog is not None:
                if leg.reinvite is not None and not self._send_ack(
                    leg, leg.reinvite.cseq.number, now
                ):
                    return  # §13.2.2.4: a retransmitted 2xx is ACKed again, not reported
            self._events.append(
                InDialogResponseReceived(leg_id=leg.id, method=method, response=response)
            )

    def _on_invite_response(self, leg: Leg, response: Response, flow: Flow, now: float) -> None:
        code = response.status_code
        if code < 200:
            leg.move(LegCause.GOT_1XX)
            if leg.cancel_pending:
                leg.cancel_pending = False
                self.cancel(leg.id, now)
            self._events.append(ProgressReceived(leg_id=leg.id, response=response))
        elif code < 300:
            if leg.dialog is None:
                leg.dialog = Dialog.as_uac(leg.invite, response, flow=leg.flow)
                self._legs_by_dialog[_dialog_key(leg.dialog)] = leg.id
            self._send_ack(leg, leg.invite.cseq.number, now)
            if leg.state in (LegState.CALLING, LegState.EARLY):  # not a 2xx retransmission
                leg.move(LegCause.GOT_2XX)
                self._events.append(CallEstablished(leg_id=leg.id, response=response))
                if leg.cancelled:
                    # §9.1: CANCEL lost the race against the 2xx: the call must be ended.
                    self._send_bye(leg, now, "cancelled")
        else:
            if code in (401, 407) and self._retry_with_credentials(leg, response, now):
                return
            self._end_leg(leg, LegCause.GOT_FAILURE)
            self._events.append(
                CallFailed(
                    leg_id=leg.id, status_code=code, reason=response.reason, response=response
                )
            )

    def _retry_with_credentials(self, leg: Leg, response: Response, now: float) -> bool:
        """§22.2: answer a 401/407 by re-sending the INVITE with credentials."""
        if leg.credentials is None or leg.cancelled or leg.cancel_pending:
            return False
        header = "WWW-Authenticate" if response.status_code == 401 else "Proxy-Authenticate"
        challenges = response.headers.get_all(header)
        if not challenges:
            return False
        try:
            challenge = auth.select_challenge(challenges)
        except auth.AuthError:
            return False
        stale = "stale=true" in challenge.replace(" ", "").lower()
        if leg.auth_attempts >= (2 if stale else 1):
            return False
        leg.auth_attempts += 1
        old = leg.invite
        request = Request(method="INVITE", uri=old.uri)
        h = request.headers
        h.add("Via", self._via(leg.flow))
        for name, value in old.headers:
            if name in ("Via", "CSeq", "Authorization", "Proxy-Authorization", "Content-Length"):
                continue
            h.add(name, value)
        cseq = old.cseq.number + 1
        h.add("CSeq", f"{cseq} INVITE")
        username, password = leg.credentials
        value = auth.build_authorization(
            challenge,
            method="INVITE",
            uri=old.uri,
            username=username,
            password=password,
            cnonce=f"{self.rng.getrandbits(64):016x}",
            body=old.body,
        )
        h.add("Authorization" if response.status_code == 401 else "Proxy-Authorization", value)
        request.body = old.body
        self._leg_by_client_txn.pop(leg.invite_transaction or -1, None)
        leg.invite = request
        txn_id = self.transactions.send_request(request, leg.flow, now)
        leg.invite_transaction = txn_id
        self._leg_by_client_txn[txn_id] = leg.id
        return True

    def _on_timeout(self, event: tx.TransactionTimedOut, now: float) -> None:
        if event.server:
            leg_id = self._leg_by_server_txn.pop(event.transaction_id, None)
            return  # Timer H: the error response was never ACKed; the leg already ended
        leg_id = self._leg_by_client_txn.get(event.transaction_id)
        self._forget_client_txn(event.transaction_id)
        leg = self._legs.get(leg_id) if leg_id is not None else None
        if leg is None:
            return
        if event.transaction_id == leg.invite_transaction:
            self._end_leg(leg, LegCause.TIMED_OUT)
            self._events.append(
                CallFailed(leg_id=leg.id, status_code=408, reason="Request Timeout")
            )
        elif event.method == "BYE":
            self._end_leg(leg, LegCause.BYE_TIMED_OUT)
            self._events.append(
                CallTerminated(leg_id=leg.id, ended_by=EndedBy.LOCAL, reason="BYE timed out")
            )
        else:
            self._events.append(
                InDialogResponseReceived(
                    leg_id=leg.id, method=event.method, response=None, timed_out=True
                )
            )

    # ---- 2xx reliability (§13.3.1.4 UAS, §13.2.2.4 UAC) -------------------------------------

    def _start_2xx_retransmission(
        self,
        leg: Leg,
        response: Response,
        now: float,
        *,
        request: Request | None = None,
        flow: Flow | None = None,
    ) -> None:
        """``request``/``flow``: the INVITE answered (default: the leg's initial INVITE). A
        re-INVITE's 2xx goes where that re-INVITE came from (its Via), never to the leg's
        first INVITE, which on a UAC leg is our own request."""
        key = (response.call_id, response.cseq.number)
        t1 = self.timers.t1_seconds
        dest = tx.response_flow(request or leg.invite, flow or leg.flow)
        self._pending_2xx[key] = _Pending2xx(
            leg.id, bytes(response), dest, t1, now + self.timers.timeout_seconds
        )
        self._heap.arm(("2xx", key), now + t1)

    def _retransmit_2xx(self, key: tuple[str, int], now: float) -> None:
        pending = self._pending_2xx.get(key)
        if pending is None:
            return
        leg = self._legs.get(pending.leg_id)
        if now >= pending.give_up_at or leg is None:
            # §13.3.1.4: no ACK for 64*T1 -> the session SHOULD be terminated with BYE.
            del self._pending_2xx[key]
            if leg is not None and leg.state is LegState.ANSWERED:
                leg.move(LegCause.NO_ACK)
                self._send_bye(leg, now, "no ACK", ended_by=EndedBy.NO_ACK)
            return
        self.transactions.send_stateless(pending.data, pending.flow)
        pending.interval = min(2 * pending.interval, self.timers.t2_seconds)
        self._heap.arm(("2xx", key), min(now + pending.interval, pending.give_up_at))

    def _stop_2xx_for_leg(self, leg: Leg) -> None:
        for key in [k for k, p in self._pending_2xx.items() if p.leg_id == leg.id]:
            del self._pending_2xx[key]
            self._heap.cancel(("2xx", key))

    def _send_ack(self, leg: Leg, cseq: int, now: float) -> bool:
        """ACK the 2xx for INVITE ``cseq``; a retransmitted 2xx gets the very same ACK again
        (§13.2.2.4). Returns True for the first ACK, False for a re-sent one."""
        assert leg.dialog is not None
        sent = leg.dialog.extra.get(f"ack:{cseq}")
        if isinstance(sent, bytes):
            self.transactions.send_stateless(sent, self._dialog_flow(leg.dialog))
            return False
        ack = leg.dialog.build_request("ACK", via=self._via(leg.dialog.flow), cseq=cseq)
        self._common_headers_into(ack)
        data = bytes(ack)
        leg.dialog.extra[f"ack:{cseq}"] = data
        self.transactions.send_stateless(data, self._dialog_flow(leg.dialog))
        return True

    def _reack_2xx(self, response: Response, now: float) -> None:
        """§13.2.2.4: a retransmitted 2xx gets the same ACK again."""
        key = (response.call_id, response.from_.tag or "", response.to.tag or "")
        leg = self._legs.get(self._legs_by_dialog.get(key, -1))
        if leg is None or leg.dialog is None:
            return
        data = leg.dialog.extra.get(f"ack:{response.cseq.number}")
        if isinstance(data, bytes):
            self.transactions.send_stateless(data, self._dialog_flow(leg.dialog))

    # ---- helpers ----------------------------------------------------------------------------

    def _send_bye(
        self, leg: Leg, now: float, reason: str | None, ended_by: EndedBy = EndedBy.LOCAL
    ) -> None:
        assert leg.dialog is not None
        bye = leg.dialog.build_request("BYE", via=self._via(leg.dialog.flow))
        self._finish_request(bye, _reason_header(reason), b"", None)
        txn_id = self.transactions.send_request(bye, self._dialog_flow(leg.dialog), now)
        leg.client_requests[txn_id] = "BYE"
        self._leg_by_client_txn[txn_id] = leg.id
        leg.move(LegCause.SENT_BYE)
        if ended_by is EndedBy.NO_ACK:
            self._events.append(
                CallTerminated(
                    leg_id=leg.id, ended_by=EndedBy.NO_ACK, reason="2xx not acknowledged"
                )
            )
            leg.client_requests[txn_id] = "BYE-noack"

    def _end_leg(self, leg: Leg, cause: LegCause) -> None:
        if leg.state is LegState.TERMINATED:
            return
        leg.move(cause)
        self._stop_2xx_for_leg(leg)
        self._legs.pop(leg.id, None)
        if leg.dialog is not None:
            self._legs_by_dialog.pop(_dialog_key(leg.dialog), None)
        # Client transactions still running (BYE) keep their mapping until they end, so a
        # late response finds nothing and is ignored.

    def _forget_client_txn(self, txn_id: int) -> None:
        leg_id = self._leg_by_client_txn.pop(txn_id, None)
        leg = self._legs.get(leg_id) if leg_id is not None else None
        if leg is not None:
            leg.client_requests.pop(txn_id, None)

    def _find_leg(self, request: Request) -> Leg | None:
        # Our tag is the To tag of requests we receive within the dialog.
        key = (request.call_id, request.to.tag or "", request.from_.tag or "")
        leg_id = self._legs_by_dialog.get(key)
        return self._legs.get(leg_id) if leg_id is not None else None

    def _uas_leg(self, leg_id: int) -> Leg:
        leg = self._legs.get(leg_id)
        if leg is None or not leg.uas or leg.state not in (LegState.INCOMING, LegState.EARLY):
            raise LocalProtocolError(f"leg {leg_id} cannot be answered now")
        return leg

    def _respond_invite(
        self,
        leg: Leg,
        status_code: int,
        reason: str | None,
        headers: list[tuple[str, str]],
        body: bytes,
        now: float,
    ) -> Response:
        assert leg.invite_transaction is not None
        response = make_response(
            leg.invite,
            status_code,
            reason,
            to_tag=leg.local_tag,
            headers=self._common_headers(headers),
            body=body,
        )
        self.transactions.send_response(leg.invite_transaction, response, now)
        return response

    def _answer_error(self, tid: int, status_code: int, reason: str, now: float) -> None:
        txn = self.transactions.get(tid)
        if txn is None or txn.state not in (tx.State.TRYING, tx.State.PROCEEDING):
            return
        if txn.final_status is not None or txn.request is None:
            return
        leg_id = self._leg_by_server_txn.pop(tid, None)
        if leg_id is not None and (leg := self._legs.get(leg_id)) is not None:
            self._end_leg(leg, LegCause.ABORTED)
        try:
            response = make_response(
                txn.request,
                status_code,
                reason,
                to_tag=self._new_tag(),
                headers=self._common_headers(()),
            )
            self.transactions.send_response(tid, response, now)
        except SipError:
            pass  # the request's own headers are unusable: nothing can be answered

    def _reject_malformed(self, exc: ParseError, flow: Flow) -> None:
        """§21.4.1: answer 400 (or the error's status) when the request can be answered."""
        answered = False
        answerable = exc.answerable
        if isinstance(answerable, Answerable) and answerable.method != "ACK":
            request = Request(
                method=answerable.method, uri="sip:invalid", headers=answerable.headers
            )
            try:
                tx.stamp_via(request, flow)
                dest = tx.response_flow(request, flow)
            except SipError:
                dest = flow  # the top Via itself is broken: answer where it came from
            try:
                response = make_response(
                    request,
                    exc.status_code,
                    exc.reason,
                    to_tag=self._new_tag(),
                    headers=self._common_headers(()),
                )
            except SipError:  # unparseable To: copied as it is, without a tag
                response = make_response(
                    request, exc.status_code, exc.reason, headers=self._common_headers(())
                )
            self.transactions.send_stateless(bytes(response), dest)
            answered = True
        self._events.append(
            MessageRejected(
                flow=flow, error=str(exc), status_code=exc.status_code, answered=answered
            )
        )

    def _common_headers(self, headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
        return [*headers, ("Server", self.settings.user_agent)]

    def _common_headers_into(self, request: Request) -> None:
        request.headers.add("User-Agent", self.settings.user_agent)

    def _finish_request(
        self, request: Request, headers: Headers, body: bytes, content_type: str | None
    ) -> None:
        for name, value in headers:
            request.headers.add(name, value)
        self._common_headers_into(request)
        if body:
            request.headers.add("Content-Type", content_type or "application/sdp")
            request.body = body

    def _host_for(self, flow: Flow) -> tuple[str, int]:
        host, port = flow.local if flow.local else ("127.0.0.1", 5060)
        host = self.settings.advertised_host or host
        return (f"[{host}]" if ":" in host else host), port

    def _via(self, flow: Flow) -> str:
        host, port = self._host_for(flow)
        branch = f"{tx.MAGIC_COOKIE}{self.rng.getrandbits(64):016x}"
        return f"SIP/2.0/{flow.transport} {host}:{port};branch={branch};rport"

    def _contact(self, flow: Flow) -> str:
        host, port = self._host_for(flow)
        transport = "" if flow.transport == "UDP" else f";transport={flow.transport.lower()}"
        return f"<sip:{self.settings.contact_user}@{host}:{port}{transport}>"

    def _dialog_flow(self, dialog: Dialog) -> Flow:
        """In-dialog requests go to the next hop when it is numeric and the transport is
        datagram; on connections, and for host names, they reuse the dialog's flow (the
        symmetric path through the carrier's SBC or NAT)."""
        if dialog.flow.reliable:
            return dialog.flow
        hop = dialog.next_hop()
        if hop is None:
            return dialog.flow
        return Flow(dialog.flow.transport, hop, dialog.flow.connection, dialog.flow.local)

    def _new_tag(self) -> str:
        return f"{self.rng.getrandbits(48):012x}"


def _dialog_key(dialog: Dialog) -> tuple[str, str, str]:
    return (dialog.id.call_id, dialog.id.local_tag, dialog.id.remote_tag)


def _options(values: list[str]) -> list[str]:
    return [v.strip().lower() for v in values if v.strip()]


def _reason_header(reason: str | None) -> list[tuple[str, str]]:
    if not reason:
        return []
    text = reason.replace('"', "'")
    return [("Reason", f'SIP;cause=200;text="{text}"')]
