"""SIP transaction layer (RFC 3261 §17, amended by RFC 6026), sans-IO.

Four state machines: INVITE client (§17.1.1), non-INVITE client (§17.1.2), INVITE server
(§17.2.1), non-INVITE server (§17.2.2). RFC 6026 adds the ``ACCEPTED`` state to both INVITE
machines so that 2xx retransmissions and their ACKs are handled by the transaction user and
INVITE retransmissions are absorbed. All four are data in this file: :data:`INITIAL_STATE`,
:data:`TRANSITIONS` (state moves, what happens to each input, absorbed retransmissions
included), :data:`ON_ENTER` (the timers each state arms and cancels, per transport
reliability) and :data:`TIMER_INPUT` (what a firing timer feeds to its machine).

The layer never reads a clock or touches a socket: every entry point takes ``now``; what it
wants sent is queued as :class:`Outgoing`; :meth:`TransactionLayer.get_timer` /
:meth:`TransactionLayer.handle_timer` drive retransmissions and time-outs.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import cast

from .errors import LocalProtocolError, ParseError
from .message import Headers, Request, Response, Via
from .timers import TimerHeap, TimerSettings
from .uri import split_quoted

Address = tuple[str, int]
MAGIC_COOKIE = "z9hG4bK"  # RFC 3261 §8.1.1.7
RELIABLE_TRANSPORTS = frozenset({"TCP", "TLS", "SCTP", "WS", "WSS"})


@dataclass(frozen=True, slots=True)
class Flow:
    """Where a message came from or goes to: transport, remote address, and for
    connection-oriented transports the connection it travels on (RFC 3261 §18.2.2)."""

    transport: str
    remote: Address
    connection: int | None = None
    local: Address | None = None  # the listener it came in on / leaves from (Via, Contact)

    @property
    def reliable(self) -> bool:
        return self.transport in RELIABLE_TRANSPORTS


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A message the adapter must send on ``flow``."""

    data: bytes
    flow: Flow


# ---------------------------------------------------------------------------------------------
# Events passed up to the transaction user
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestReceived:
    """A new request started a server transaction (retransmissions never reach the TU)."""

    request: Request
    transaction_id: int
    flow: Flow
    received_at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class AckReceived:
    """An ACK outside any transaction: the ACK for a 2xx (§17.1.1.3, RFC 6026 §7.1)."""

    request: Request
    flow: Flow
    received_at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseReceived:
    """A response for a client transaction; ``transaction_id`` None for a 2xx retransmission
    arriving after the transaction ended (the TU must ACK it again, §13.2.2.4)."""

    response: Response
    transaction_id: int | None
    flow: Flow
    received_at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class TransactionTimedOut:
    """Timer B/F fired (client: no final response) or timer H fired (server: no ACK for an
    error response, §17.2.1). ``reason`` names the timer ("Timer B")."""

    transaction_id: int
    method: str
    server: bool
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TransactionTerminated:
    """A transaction reached TERMINATED normally (for bookkeeping by the TU)."""

    transaction_id: int
    server: bool


TransactionEvent = (
    RequestReceived | AckReceived | ResponseReceived | TransactionTimedOut | TransactionTerminated
)


# ---------------------------------------------------------------------------------------------
# The four machines: states, inputs, timers and their tables
#
# Everything that decides what a transaction does lives in the tables below; the layer only
# looks rows up and carries them out:
#   INITIAL_STATE  machine -> the state a new transaction starts in
#   TRANSITIONS    (machine, state, input) -> Step(next state, reaction, row timer plan)
#   ON_ENTER       (machine, state entered, reliable transport) -> timers to cancel and arm
#   TIMER_INPUT    timer -> the input its firing feeds to the machine
# An input with no row is illegal for that machine and state (LocalProtocolError). Transport
# errors (§17.1.4, §17.2.4) are not modelled: the adapter does not report them.
# ---------------------------------------------------------------------------------------------


class Machine(enum.StrEnum):
    """The four transaction state machines of RFC 3261 §17 (values are the usual acronyms)."""

    ICT = "ict"  # INVITE client transaction, §17.1.1 + RFC 6026 §7.2
    NICT = "nict"  # non-INVITE client transaction, §17.1.2
    IST = "ist"  # INVITE server transaction, §17.2.1 + RFC 6026 §7.1
    NIST = "nist"  # non-INVITE server transaction, §17.2.2

    @property
    def server(self) -> bool:
        return self in (Machine.IST, Machine.NIST)


class State(enum.Enum):
    CALLING = "Calling"
    TRYING = "Trying"
    PROCEEDING = "Proceeding"
    ACCEPTED = "Accepted"  # RFC 6026 §7.1 / §7.2
    COMPLETED = "Completed"
    CONFIRMED = "Confirmed"
    TERMINATED = "Terminated"


class Input(enum.Enum):
    """What a machine reacts to. Client machines get responses from the network; server
    machines get responses from the TU and retransmissions and ACKs from the network."""

    PROVISIONAL = "1xx"
    SUCCESS = "2xx"
    FAILURE = "300-699"
    REQUEST = "request"  # server: a retransmission of its request (it matched, §17.2.3)
    ACK = "ACK"  # INVITE server: an ACK that matched it (§17.2.3)
    CANCEL_SENT = "CANCEL sent"  # INVITE client: the TU sent a CANCEL for it (§9.1)
    RETRANSMIT = "retransmit"  # timer A, E or G fired
    TIMEOUT = "timeout"  # timer B, F or H fired
    DONE = "done"  # timer D, I, J, K, L or M fired: the linger period is over


class Timer(enum.StrEnum):
    """The transaction timers of RFC 3261 §17 Table 4 (C is a proxy's) and RFC 6026's L and M."""

    A = "A"  # INVITE request retransmission
    B = "B"  # INVITE transaction time-out
    D = "D"  # wait for response retransmissions (INVITE client)
    E = "E"  # non-INVITE request retransmission
    F = "F"  # non-INVITE transaction time-out
    G = "G"  # INVITE error response retransmission
    H = "H"  # wait for the ACK of an error response
    I = "I"  # noqa: E741 (the RFC's name) wait for ACK retransmissions
    J = "J"  # wait for non-INVITE request retransmissions
    K = "K"  # wait for non-INVITE response retransmissions
    L = "L"  # RFC 6026: wait for retransmissions of an accepted INVITE
    M = "M"  # RFC 6026: wait for 2xx retransmissions (and forked 2xx) of an accepted INVITE


class Reaction(enum.Enum):
    """What the layer does with an input, besides the state move and the timer plans."""

    REPORT = "report"  # passed to the TU (a response, a 2xx ACK, a time-out, the end)
    SEND = "send"  # the TU's response is passed to the transport
    ACK = "ack"  # INVITE client: ACK the error response (§17.1.1.3), then report it
    RESEND = "resend"  # what the transaction sent last goes to the transport once more
    ABSORB = "absorb"  # nothing is sent and nothing reported (the row's timers still run)


#: ``delay(settings, interval)`` -> seconds from now. ``interval`` is the transaction's current
#: retransmission interval, which timers A, E and G double.
Delay = Callable[[TimerSettings, float], float]

#: §17.1.1.2: "The client transaction SHOULD start timer D when it enters the "Completed"
#: state, with a value of at least 32 seconds for unreliable transports, and a value of zero
#: seconds for reliable transports." A fixed floor, not 64*T1: "the client transaction does not
#: know the value of T1 in use by the server transaction".
TIMER_D_SECONDS = 32.0


def _zero(timers: TimerSettings, interval: float) -> float:
    return 0.0


def _t1(timers: TimerSettings, interval: float) -> float:
    return timers.t1_seconds


def _t2(timers: TimerSettings, interval: float) -> float:
    return timers.t2_seconds


def _t4(timers: TimerSettings, interval: float) -> float:
    return timers.t4_seconds


def _64_t1(timers: TimerSettings, interval: float) -> float:
    return timers.timeout_seconds


def _timer_d(timers: TimerSettings, interval: float) -> float:
    return TIMER_D_SECONDS


def _doubled(timers: TimerSettings, interval: float) -> float:
    return 2 * interval


def _doubled_up_to_t2(timers: TimerSettings, interval: float) -> float:
    return min(2 * interval, timers.t2_seconds)


@dataclass(frozen=True, slots=True)
class TimerPlan:
    """Timers to cancel, then timers to (re-)arm ``delay`` seconds from now. Arming one of the
    retransmission timers (A, E, G) also makes its delay the transaction's interval."""

    cancel: frozenset[Timer] = frozenset()
    arm: tuple[tuple[Timer, Delay], ...] = ()

    def deadlines(
        self, now: float, timers: TimerSettings, interval: float = 0.0
    ) -> dict[Timer, float]:
        """The deadline of every timer this plan arms, in arming order."""
        return {timer: now + delay(timers, interval) for timer, delay in self.arm}


NO_TIMERS = TimerPlan()
#: "The client transaction MUST be destroyed the instant it enters the "Terminated" state"
#: (§17.1.1.2; the same for every machine): nothing of it may fire afterwards.
ALL_TIMERS_CANCELLED = TimerPlan(cancel=frozenset(Timer))


@dataclass(frozen=True, slots=True)
class Step:
    """One row of :data:`TRANSITIONS`: the next state, what happens to the input, and timers
    of the row itself (for self-loops; :data:`ON_ENTER` covers entering a new state)."""

    to: State
    reaction: Reaction = Reaction.REPORT
    timers: TimerPlan = NO_TIMERS


M, S, In, R = Machine, State, Input, Reaction

#: machine -> the state a new transaction is in.
INITIAL_STATE: Mapping[Machine, State] = MappingProxyType(
    {
        # §17.1.1.2: "The initial state, "calling", MUST be entered when the TU initiates a new
        # client transaction with an INVITE request."
        M.ICT: S.CALLING,
        # §17.1.2.2: "The "Trying" state is entered when the TU initiates a new client
        # transaction with a request."
        M.NICT: S.TRYING,
        # §17.2.1: "When a server transaction is constructed for a request, it enters the
        # "Proceeding" state."
        M.IST: S.PROCEEDING,
        # §17.2.2: "The state machine is initialized in the "Trying" state".
        M.NIST: S.TRYING,
    }
)

#: (machine, state, input) -> Step. Anything not listed is illegal for that machine and state.
TRANSITIONS: Mapping[tuple[Machine, State, Input], Step] = MappingProxyType(
    {
        # ---- INVITE client, §17.1.1.2 (Figure 5) + RFC 6026 §7.2 ------------------------
        # "When timer A fires, the client transaction MUST retransmit the request by passing
        # it to the transport layer, and MUST reset the timer with a value of 2*T1. ... This
        # process MUST continue so that the request is retransmitted with intervals that
        # double after each transmission."
        (M.ICT, S.CALLING, In.RETRANSMIT): Step(
            S.CALLING, R.RESEND, TimerPlan(arm=((Timer.A, _doubled),))
        ),
        # "If the client transaction receives a provisional response while in the "Calling"
        # state, it transitions to the "Proceeding" state. ... the provisional response MUST
        # be passed to the TU. Any further provisional responses MUST be passed up to the TU
        # while in the "Proceeding" state."
        (M.ICT, S.CALLING, In.PROVISIONAL): Step(S.PROCEEDING),
        (M.ICT, S.PROCEEDING, In.PROVISIONAL): Step(S.PROCEEDING),
        # RFC 6026 §7.2: a 2xx in Calling or Proceeding moves to Accepted (not Terminated, as
        # RFC 3261 had it) and is passed up; the UAC core ACKs it, not the transaction.
        (M.ICT, S.CALLING, In.SUCCESS): Step(S.ACCEPTED),
        (M.ICT, S.PROCEEDING, In.SUCCESS): Step(S.ACCEPTED),
        # "reception of a response with status code from 300-699 MUST cause the client
        # transaction to transition to "Completed". The client transaction MUST pass the
        # received response up to the TU, and the client transaction MUST generate an ACK
        # request, even if the transport is reliable"
        (M.ICT, S.CALLING, In.FAILURE): Step(S.COMPLETED, R.ACK),
        (M.ICT, S.PROCEEDING, In.FAILURE): Step(S.COMPLETED, R.ACK),
        # "If the client transaction is still in the "Calling" state when timer B fires, the
        # client transaction SHOULD inform the TU that a timeout has occurred. The client
        # transaction MUST NOT generate an ACK."
        (M.ICT, S.CALLING, In.TIMEOUT): Step(S.TERMINATED),
        # §9.1: "If there is no final response for the original request in 64*T1 seconds
        # (T1 is defined in Section 17.1.1.1), the client SHOULD then consider the original
        # transaction cancelled and SHOULD destroy the client transaction handling the
        # original request." Sending the CANCEL (re-)starts Timer B for that; in Proceeding
        # B only runs after a CANCEL (entering Proceeding stops it, see ON_ENTER).
        (M.ICT, S.CALLING, In.CANCEL_SENT): Step(
            S.CALLING, R.ABSORB, TimerPlan(arm=((Timer.B, _64_t1),))
        ),
        (M.ICT, S.PROCEEDING, In.CANCEL_SENT): Step(
            S.PROCEEDING, R.ABSORB, TimerPlan(arm=((Timer.B, _64_t1),))
        ),
        (M.ICT, S.PROCEEDING, In.TIMEOUT): Step(S.TERMINATED),
        # RFC 6026 §7.2: in Accepted every 2xx that matches (a retransmission, or one from
        # another branch of a forked INVITE) is passed up for the UAC core to ACK; anything
        # else is absorbed, and so is a CANCEL that came too late.
        (M.ICT, S.ACCEPTED, In.SUCCESS): Step(S.ACCEPTED),
        (M.ICT, S.ACCEPTED, In.PROVISIONAL): Step(S.ACCEPTED, R.ABSORB),
        (M.ICT, S.ACCEPTED, In.FAILURE): Step(S.ACCEPTED, R.ABSORB),
        (M.ICT, S.ACCEPTED, In.CANCEL_SENT): Step(S.ACCEPTED, R.ABSORB),
        (M.ICT, S.ACCEPTED, In.DONE): Step(S.TERMINATED),  # Timer M
        # "Any retransmissions of the final response that are received while in the
        # "Completed" state MUST cause the ACK to be re-passed to the transport layer for
        # retransmission, but the newly received response MUST NOT be passed up to the TU."
        (M.ICT, S.COMPLETED, In.FAILURE): Step(S.COMPLETED, R.RESEND),
        (M.ICT, S.COMPLETED, In.PROVISIONAL): Step(S.COMPLETED, R.ABSORB),
        (M.ICT, S.COMPLETED, In.SUCCESS): Step(S.COMPLETED, R.ABSORB),
        (M.ICT, S.COMPLETED, In.CANCEL_SENT): Step(S.COMPLETED, R.ABSORB),
        # "If timer D fires while the client transaction is in the "Completed" state, the
        # client transaction MUST move to the terminated state."
        (M.ICT, S.COMPLETED, In.DONE): Step(S.TERMINATED),
        # ---- non-INVITE client, §17.1.2.2 (Figure 6) ------------------------------------
        # "If timer E fires while still in this state, the timer is reset, but this time with
        # a value of MIN(2*T1, T2). When the timer fires again, it is reset to a MIN(4*T1,
        # T2). This process continues so that retransmissions occur with an exponentially
        # increasing interval that caps at T2."
        (M.NICT, S.TRYING, In.RETRANSMIT): Step(
            S.TRYING, R.RESEND, TimerPlan(arm=((Timer.E, _doubled_up_to_t2),))
        ),
        # "If a provisional response is received while in the "Trying" state, the response
        # MUST be passed to the TU, and then the client transaction SHOULD move to the
        # "Proceeding" state. If a final response (status codes 200-699) is received while in
        # the "Trying" state, the response MUST be passed to the TU, and the client
        # transaction MUST transition to the "Completed" state."
        (M.NICT, S.TRYING, In.PROVISIONAL): Step(S.PROCEEDING),
        (M.NICT, S.TRYING, In.SUCCESS): Step(S.COMPLETED),
        (M.NICT, S.TRYING, In.FAILURE): Step(S.COMPLETED),
        # "If Timer F fires while the client transaction is still in the "Trying" state, the
        # client transaction SHOULD inform the TU about the timeout, and then it SHOULD enter
        # the "Terminated" state."
        (M.NICT, S.TRYING, In.TIMEOUT): Step(S.TERMINATED),
        # "If Timer E fires while in the "Proceeding" state, the request MUST be passed to
        # the transport layer for retransmission, and Timer E MUST be reset with a value of
        # T2 seconds." A provisional never re-arms E: it keeps the deadline it had in Trying,
        # or retransmitted provisionals would postpone the retransmission indefinitely.
        (M.NICT, S.PROCEEDING, In.RETRANSMIT): Step(
            S.PROCEEDING, R.RESEND, TimerPlan(arm=((Timer.E, _t2),))
        ),
        (M.NICT, S.PROCEEDING, In.PROVISIONAL): Step(S.PROCEEDING),
        (M.NICT, S.PROCEEDING, In.SUCCESS): Step(S.COMPLETED),
        (M.NICT, S.PROCEEDING, In.FAILURE): Step(S.COMPLETED),
        # "If timer F fires while in the "Proceeding" state, the TU MUST be informed of a
        # timeout, and the client transaction MUST transition to the terminated state."
        (M.NICT, S.PROCEEDING, In.TIMEOUT): Step(S.TERMINATED),
        # "The "Completed" state exists to buffer any additional response retransmissions
        # that may be received" (absorbed). "If Timer K fires while in this state, the client
        # transaction MUST transition to the "Terminated" state."
        (M.NICT, S.COMPLETED, In.PROVISIONAL): Step(S.COMPLETED, R.ABSORB),
        (M.NICT, S.COMPLETED, In.SUCCESS): Step(S.COMPLETED, R.ABSORB),
        (M.NICT, S.COMPLETED, In.FAILURE): Step(S.COMPLETED, R.ABSORB),
        (M.NICT, S.COMPLETED, In.DONE): Step(S.TERMINATED),
        # ---- INVITE server, §17.2.1 (Figure 7) + RFC 6026 §7.1 --------------------------
        # "The TU passes any number of provisional responses to the server transaction. So
        # long as the server transaction is in the "Proceeding" state, each of these MUST be
        # passed to the transport layer for transmission. ... If a request retransmission is
        # received while in the "Proceeding" state, the most recent provisional response that
        # was received from the TU MUST be passed to the transport layer for retransmission."
        (M.IST, S.PROCEEDING, In.PROVISIONAL): Step(S.PROCEEDING, R.SEND),
        (M.IST, S.PROCEEDING, In.REQUEST): Step(S.PROCEEDING, R.RESEND),
        # RFC 6026 §7.1: a 2xx from the TU is sent and the transaction moves to Accepted
        # (RFC 3261 had Terminated), so that retransmissions of the INVITE are absorbed
        # instead of looking like a new call. The TU retransmits the 2xx itself.
        (M.IST, S.PROCEEDING, In.SUCCESS): Step(S.ACCEPTED, R.SEND),
        # "if the TU passes a response with status code from 300 to 699 to the server
        # transaction, the response MUST be passed to the transport layer for transmission,
        # and the state machine MUST enter the "Completed" state."
        (M.IST, S.PROCEEDING, In.FAILURE): Step(S.COMPLETED, R.SEND),
        # An ACK before any final response matches nothing the transaction sent: absorbed.
        (M.IST, S.PROCEEDING, In.ACK): Step(S.PROCEEDING, R.ABSORB),
        # RFC 6026 §7.1: in Accepted the TU's 2xx (re)transmissions pass through, INVITE
        # retransmissions are absorbed. An ACK that matches the INVITE here is a 2xx ACK
        # that reused the INVITE's branch, as RFC 2543 peers do (the fallback matching of
        # §17.2.3): it belongs to the TU, like any 2xx ACK. RFC 6026 (its update of §17.2.1):
        # "If Timer L fires while the INVITE server transaction is in the "Accepted" state,
        # the transaction MUST transition to the "Terminated" state."
        (M.IST, S.ACCEPTED, In.SUCCESS): Step(S.ACCEPTED, R.SEND),
        (M.IST, S.ACCEPTED, In.REQUEST): Step(S.ACCEPTED, R.ABSORB),
        (M.IST, S.ACCEPTED, In.ACK): Step(S.ACCEPTED, R.REPORT),
        (M.IST, S.ACCEPTED, In.DONE): Step(S.TERMINATED),  # Timer L
        # "If timer G fires, the response is passed to the transport layer once more for
        # retransmission, and timer G is set to fire in MIN(2*T1, T2) seconds. From then on,
        # when timer G fires, the response is passed to the transport again for transmission,
        # and timer G is reset with a value that doubles, unless that value exceeds T2, in
        # which case it is reset with the value of T2. ... Furthermore, while in the
        # "Completed" state, if a request retransmission is received, the server SHOULD pass
        # the response to the transport for retransmission."
        (M.IST, S.COMPLETED, In.RETRANSMIT): Step(
            S.COMPLETED, R.RESEND, TimerPlan(arm=((Timer.G, _doubled_up_to_t2),))
        ),
        (M.IST, S.COMPLETED, In.REQUEST): Step(S.COMPLETED, R.RESEND),
        # "If an ACK is received while the server transaction is in the "Completed" state,
        # the server transaction MUST transition to the "Confirmed" state." The ACK of an
        # error response is the transaction's own: it is not passed to the TU.
        (M.IST, S.COMPLETED, In.ACK): Step(S.CONFIRMED, R.ABSORB),
        # "If timer H fires while in the "Completed" state, it implies that the ACK was never
        # received. In this case, the server transaction MUST transition to the "Terminated"
        # state, and MUST indicate to the TU that a transaction failure has occurred."
        (M.IST, S.COMPLETED, In.TIMEOUT): Step(S.TERMINATED),
        # "The purpose of the "Confirmed" state is to absorb any additional ACK messages that
        # arrive, triggered from retransmissions of the final response." A late INVITE
        # retransmission is absorbed too. "Once timer I fires, the server MUST transition to
        # the "Terminated" state."
        (M.IST, S.CONFIRMED, In.ACK): Step(S.CONFIRMED, R.ABSORB),
        (M.IST, S.CONFIRMED, In.REQUEST): Step(S.CONFIRMED, R.ABSORB),
        (M.IST, S.CONFIRMED, In.DONE): Step(S.TERMINATED),
        # ---- non-INVITE server, §17.2.2 (Figure 8) --------------------------------------
        # "Once in the "Trying" state, any further request retransmissions are discarded."
        (M.NIST, S.TRYING, In.REQUEST): Step(S.TRYING, R.ABSORB),
        # "While in the "Trying" state, if the TU passes a provisional response to the server
        # transaction, the server transaction MUST enter the "Proceeding" state. The response
        # MUST be passed to the transport layer for transmission."
        (M.NIST, S.TRYING, In.PROVISIONAL): Step(S.PROCEEDING, R.SEND),
        (M.NIST, S.TRYING, In.SUCCESS): Step(S.COMPLETED, R.SEND),
        (M.NIST, S.TRYING, In.FAILURE): Step(S.COMPLETED, R.SEND),
        # "Any further provisional responses that are received from the TU while in the
        # "Proceeding" state MUST be passed to the transport layer for transmission. If a
        # retransmission of the request is received while in the "Proceeding" state, the most
        # recently sent provisional response MUST be passed to the transport layer for
        # retransmission. If the TU passes a final response (status codes 200-699) to the
        # server while in the "Proceeding" state, the transaction MUST enter the "Completed"
        # state, and the response MUST be passed to the transport layer for transmission."
        (M.NIST, S.PROCEEDING, In.PROVISIONAL): Step(S.PROCEEDING, R.SEND),
        (M.NIST, S.PROCEEDING, In.REQUEST): Step(S.PROCEEDING, R.RESEND),
        (M.NIST, S.PROCEEDING, In.SUCCESS): Step(S.COMPLETED, R.SEND),
        (M.NIST, S.PROCEEDING, In.FAILURE): Step(S.COMPLETED, R.SEND),
        # "While in the "Completed" state, the server transaction MUST pass the final response
        # to the transport layer for retransmission whenever a retransmission of the request
        # is received. ... The server transaction remains in this state until Timer J fires,
        # at which point it MUST transition to the "Terminated" state." (Another response from
        # the TU here is a programming error: no row, LocalProtocolError.)
        (M.NIST, S.COMPLETED, In.REQUEST): Step(S.COMPLETED, R.RESEND),
        (M.NIST, S.COMPLETED, In.DONE): Step(S.TERMINATED),
    }
)

_UNRELIABLE, _RELIABLE = False, True

#: (machine, state entered, reliable transport) -> the timers cancelled and armed on entering
#: it, from :data:`INITIAL_STATE` or from another state (a self-loop enters nothing).
ON_ENTER: Mapping[tuple[Machine, State, bool], TimerPlan] = MappingProxyType(
    {
        # ---- INVITE client, §17.1.1.2 ---------------------------------------------------
        # "If an unreliable transport is being used, the client transaction MUST start timer A
        # with a value of T1. If a reliable transport is being used, the client transaction
        # SHOULD NOT start timer A (Timer A controls request retransmissions). For any
        # transport, the client transaction MUST start timer B with a value of 64*T1 seconds"
        (M.ICT, S.CALLING, _UNRELIABLE): TimerPlan(arm=((Timer.A, _t1), (Timer.B, _64_t1))),
        (M.ICT, S.CALLING, _RELIABLE): TimerPlan(arm=((Timer.B, _64_t1),)),
        # "In the "Proceeding" state, the client transaction SHOULD NOT retransmit the request
        # any longer." Timer B only guards Calling (Figure 5): a callee may ring for as long
        # as it likes, the TU CANCELs (which re-arms B, see CANCEL_SENT above).
        (M.ICT, S.PROCEEDING, _UNRELIABLE): TimerPlan(cancel=frozenset({Timer.A, Timer.B})),
        (M.ICT, S.PROCEEDING, _RELIABLE): TimerPlan(cancel=frozenset({Timer.A, Timer.B})),
        # RFC 6026 §7.2: entering Accepted starts Timer M = 64*T1.
        (M.ICT, S.ACCEPTED, _UNRELIABLE): TimerPlan(
            cancel=frozenset({Timer.A, Timer.B}), arm=((Timer.M, _64_t1),)
        ),
        (M.ICT, S.ACCEPTED, _RELIABLE): TimerPlan(
            cancel=frozenset({Timer.A, Timer.B}), arm=((Timer.M, _64_t1),)
        ),
        # Timer D: "at least 32 seconds for unreliable transports, and a value of zero seconds
        # for reliable transports" (TIMER_D_SECONDS).
        (M.ICT, S.COMPLETED, _UNRELIABLE): TimerPlan(
            cancel=frozenset({Timer.A, Timer.B}), arm=((Timer.D, _timer_d),)
        ),
        (M.ICT, S.COMPLETED, _RELIABLE): TimerPlan(
            cancel=frozenset({Timer.A, Timer.B}), arm=((Timer.D, _zero),)
        ),
        (M.ICT, S.TERMINATED, _UNRELIABLE): ALL_TIMERS_CANCELLED,
        (M.ICT, S.TERMINATED, _RELIABLE): ALL_TIMERS_CANCELLED,
        # ---- non-INVITE client, §17.1.2.2 -----------------------------------------------
        # "When entering this state, the client transaction SHOULD set timer F to fire in
        # 64*T1 seconds. ... If an unreliable transport is in use, the client transaction MUST
        # set timer E to fire in T1 seconds."
        (M.NICT, S.TRYING, _UNRELIABLE): TimerPlan(arm=((Timer.E, _t1), (Timer.F, _64_t1))),
        (M.NICT, S.TRYING, _RELIABLE): TimerPlan(arm=((Timer.F, _64_t1),)),
        # E and F keep running in Proceeding (E keeps its deadline; see the RETRANSMIT row).
        (M.NICT, S.PROCEEDING, _UNRELIABLE): NO_TIMERS,
        (M.NICT, S.PROCEEDING, _RELIABLE): NO_TIMERS,
        # "Once the client transaction enters the "Completed" state, it MUST set Timer K to
        # fire in T4 seconds for unreliable transports, and zero seconds for reliable
        # transports."
        (M.NICT, S.COMPLETED, _UNRELIABLE): TimerPlan(
            cancel=frozenset({Timer.E, Timer.F}), arm=((Timer.K, _t4),)
        ),
        (M.NICT, S.COMPLETED, _RELIABLE): TimerPlan(
            cancel=frozenset({Timer.E, Timer.F}), arm=((Timer.K, _zero),)
        ),
        (M.NICT, S.TERMINATED, _UNRELIABLE): ALL_TIMERS_CANCELLED,
        (M.NICT, S.TERMINATED, _RELIABLE): ALL_TIMERS_CANCELLED,
        # ---- INVITE server, §17.2.1 -----------------------------------------------------
        # No timer in Proceeding: the TU answers (and sends 100 Trying at once).
        (M.IST, S.PROCEEDING, _UNRELIABLE): NO_TIMERS,
        (M.IST, S.PROCEEDING, _RELIABLE): NO_TIMERS,
        # RFC 6026 §7.1: entering Accepted starts Timer L = 64*T1, for all transports.
        (M.IST, S.ACCEPTED, _UNRELIABLE): TimerPlan(arm=((Timer.L, _64_t1),)),
        (M.IST, S.ACCEPTED, _RELIABLE): TimerPlan(arm=((Timer.L, _64_t1),)),
        # "For unreliable transports, timer G is set to fire in T1 seconds, and is not set to
        # fire for reliable transports. ... When the "Completed" state is entered, timer H
        # MUST be set to fire in 64*T1 seconds for all transports."
        (M.IST, S.COMPLETED, _UNRELIABLE): TimerPlan(arm=((Timer.G, _t1), (Timer.H, _64_t1))),
        (M.IST, S.COMPLETED, _RELIABLE): TimerPlan(arm=((Timer.H, _64_t1),)),
        # "As Timer G is ignored in this state, any retransmissions of the response will
        # cease." ... "When this state is entered, timer I is set to fire in T4 seconds for
        # unreliable transports, and zero seconds for reliable transports."
        (M.IST, S.CONFIRMED, _UNRELIABLE): TimerPlan(
            cancel=frozenset({Timer.G, Timer.H}), arm=((Timer.I, _t4),)
        ),
        (M.IST, S.CONFIRMED, _RELIABLE): TimerPlan(
            cancel=frozenset({Timer.G, Timer.H}), arm=((Timer.I, _zero),)
        ),
        (M.IST, S.TERMINATED, _UNRELIABLE): ALL_TIMERS_CANCELLED,
        (M.IST, S.TERMINATED, _RELIABLE): ALL_TIMERS_CANCELLED,
        # ---- non-INVITE server, §17.2.2 -------------------------------------------------
        (M.NIST, S.TRYING, _UNRELIABLE): NO_TIMERS,
        (M.NIST, S.TRYING, _RELIABLE): NO_TIMERS,
        (M.NIST, S.PROCEEDING, _UNRELIABLE): NO_TIMERS,
        (M.NIST, S.PROCEEDING, _RELIABLE): NO_TIMERS,
        # "When the server transaction enters the "Completed" state, it MUST set Timer J to
        # fire in 64*T1 seconds for unreliable transports, and zero seconds for reliable
        # transports."
        (M.NIST, S.COMPLETED, _UNRELIABLE): TimerPlan(arm=((Timer.J, _64_t1),)),
        (M.NIST, S.COMPLETED, _RELIABLE): TimerPlan(arm=((Timer.J, _zero),)),
        (M.NIST, S.TERMINATED, _UNRELIABLE): ALL_TIMERS_CANCELLED,
        (M.NIST, S.TERMINATED, _RELIABLE): ALL_TIMERS_CANCELLED,
    }
)

#: timer -> the input its firing feeds to the machine of its transaction.
TIMER_INPUT: Mapping[Timer, Input] = MappingProxyType(
    {
        Timer.A: In.RETRANSMIT,
        Timer.E: In.RETRANSMIT,
        Timer.G: In.RETRANSMIT,
        Timer.B: In.TIMEOUT,
        Timer.F: In.TIMEOUT,
        Timer.H: In.TIMEOUT,
        Timer.D: In.DONE,
        Timer.I: In.DONE,
        Timer.J: In.DONE,
        Timer.K: In.DONE,
        Timer.L: In.DONE,
        Timer.M: In.DONE,
    }
)
del M, S, In, R


def _response_input(status_code: int) -> Input:
    if status_code < 200:
        return Input.PROVISIONAL
    if status_code < 300:
        return Input.SUCCESS
    return Input.FAILURE


@dataclass(slots=True, eq=False)
class Transaction:
    """State of one transaction. Mutated only by :class:`TransactionLayer`; ``state`` only by
    :meth:`advance`."""

    id: int
    machine: Machine
    key: tuple[str, ...]
    # None once a server transaction has sent its final response: for the 64*T1 it lingers
    # (timers J, L, H) only the response bytes and their destination are needed, and at
    # hundreds of calls a second the parsed requests would be tens of thousands of objects.
    request: Request | None
    flow: Flow
    state: State
    method: str = ""
    final_status: int | None = None
    response_dest: Flow | None = None
    last_response_bytes: bytes | None = None
    request_bytes: bytes = b""
    retransmit_interval: float = 0.0
    ack_bytes: bytes | None = None

    @property
    def server(self) -> bool:
        return self.machine.server

    def advance(self, event: Input) -> Step:
        """Take the :data:`TRANSITIONS` row for ``event`` in the current state (the only
        writer of ``state``); an input without a row raises :class:`LocalProtocolError`."""
        step = TRANSITIONS.get((self.machine, self.state, event))
        if step is None:
            raise LocalProtocolError(
                f"{self.machine}: no transition from {self.state.value} on {event.value}"
            )
        self.state = step.to
        return step


def server_key(request: Request) -> tuple[str, ...]:
    """§17.2.3: branch + sent-by + method, with ACK matching the INVITE. Without the magic
    cookie (RFC 2543 peers) fall back to Request-URI, tags, Call-ID, CSeq and top Via."""
    via = request.top_via
    method = "INVITE" if request.method == "ACK" else request.method
    branch = via.branch or ""
    if branch.startswith(MAGIC_COOKIE):
        return (branch, via.host.lower(), str(via.port or ""), method)
    to_tag = request.to.tag or "" if request.method != "ACK" else ""
    return (
        "2543",
        request.uri,
        request.from_.tag or "",
        to_tag,
        request.call_id,
        str(request.cseq.number),
        str(via),
        method,
    )


def client_key(branch: str, method: str) -> tuple[str, ...]:
    """§17.1.3: a response matches by the top Via branch and the CSeq method."""
    return ("c", branch, "INVITE" if method == "ACK" else method)


def response_flow(request: Request, flow: Flow) -> Flow:
    """§18.2.2 and RFC 3581 §4: where a response to ``request`` goes.

    Reliable: back on the connection the request came on. Unreliable: to ``received`` and
    the ``rport`` value when rport was asked for, else received/sent-by host and port."""
    if flow.reliable:
        return flow
    via = request.top_via
    host = via.param("received") or via.host
    rport = via.param("rport")
    if rport:
        return Flow(flow.transport, (host.strip("[]"), int(rport)), flow.connection, flow.local)
    return Flow(flow.transport, (host.strip("[]"), via.port or 5060), flow.connection, flow.local)


def stamp_via(request: Request, flow: Flow) -> None:
    """§18.2.1 + RFC 3581 §4: record where the request really came from in its top Via."""
    values = request.headers.get_all("Via")
    if not values:
        raise ParseError("missing Via", reason="Missing Via")
    via = Via.parse(values[0])
    source_host, source_port = flow.remote
    changed = False
    if via.param("rport") is not None or via.host.strip("[]") != source_host:
        via = via.with_param("received", source_host)
        changed = True
    if via.param("rport") == "":
        via = via.with_param("rport", str(source_port))
        changed = True
    if changed:
        # Rewrite the top Via where it stands: responses copy Via first (§8.2.6.2, §20).
        first = request.headers.get("Via") or ""
        rest = [p.strip() for p in split_quoted(first, ",")[1:] if p.strip()]
        rebuilt = Headers()
        placed = False
        for name, value in request.headers:
            if name == "Via" and not placed:
                placed = True
                for element in (str(via), *rest):
                    rebuilt.add("Via", element)
            else:
                rebuilt.add(name, value)
        request.headers = rebuilt


class TransactionLayer:
    """All transactions of one SIP endpoint.

    Every input goes through :meth:`_apply`: the :data:`TRANSITIONS` row moves the state,
    :data:`ON_ENTER` arms and cancels timers when the state changed, then the row's own timer
    plan runs; the caller carries out the row's :class:`Reaction`."""

    def __init__(self, timers: TimerSettings | None = None) -> None:
        self.timers = timers or TimerSettings()
        self._transactions: dict[tuple[str, ...], Transaction] = {}
        self._by_id: dict[int, Transaction] = {}
        self._next_id = 1
        self._heap = TimerHeap()
        self._events: deque[TransactionEvent] = deque()
        self._outgoing: list[Outgoing] = []

    # ---- adapter side -----------------------------------------------------------------------

    def next_event(self) -> TransactionEvent | None:
        return self._events.popleft() if self._events else None

    def datagrams_to_send(self) -> list[Outgoing]:
        out, self._outgoing = self._outgoing, []
        return out

    def get_timer(self) -> float | None:
        return self._heap.next_deadline()

    def handle_timer(self, now: float) -> None:
        for key in self._heap.pop_due(now):
            tid, timer = cast(tuple[int, Timer], key)
            txn = self._by_id.get(tid)
            if txn is not None:
                self._on_timer(txn, timer, now)

    def __len__(self) -> int:
        return len(self._by_id)

    def get(self, transaction_id: int) -> Transaction | None:
        return self._by_id.get(transaction_id)

    def armed_timers(self, transaction_id: int) -> dict[Timer, float]:
        """The deadline of each timer armed for ``transaction_id`` (empty once it ended)."""
        out: dict[Timer, float] = {}
        for timer in Timer:
            deadline = self._heap.deadline((transaction_id, timer))
            if deadline is not None:
                out[timer] = deadline
        return out

    # ---- inbound ----------------------------------------------------------------------------

    def receive_request(self, request: Request, flow: Flow, now: float) -> None:
        """A parsed request arrived (its Via already stamped by :func:`stamp_via`)."""
        key = server_key(request)
        txn = self._transactions.get(key)
        if request.method == "ACK":
            if txn is None or txn.machine is not Machine.IST:
                # ACK for a 2xx is its own transaction-less request (§17.1.1.3).
                self._events.append(AckReceived(request=request, flow=flow, received_at=now))
            elif self._apply(txn, Input.ACK, now) is Reaction.REPORT:
                self._events.append(AckReceived(request=request, flow=flow, received_at=now))
            return
        if txn is not None:
            if self._apply(txn, Input.REQUEST, now) is Reaction.RESEND:
                self._resend(txn)
            return
        machine = Machine.IST if request.method == "INVITE" else Machine.NIST
        txn = self._create(machine, key, request, flow, now)
        self._events.append(
            RequestReceived(request=request, transaction_id=txn.id, flow=flow, received_at=now)
        )

    def receive_response(self, response: Response, flow: Flow, now: float) -> None:
        via = response.top_via
        cseq = response.cseq
        txn = self._transactions.get(client_key(via.branch or "", cseq.method))
        if txn is None:
            if cseq.method == "INVITE" and 200 <= response.status_code < 300:
                self._events.append(
                    ResponseReceived(
                        response=response, transaction_id=None, flow=flow, received_at=now
                    )
                )
            return  # stray response: dropped (§18.1.2)
        reaction = self._apply(txn, _response_input(response.status_code), now)
        if reaction is Reaction.RESEND:
            self._resend(txn)  # the ACK of the error response, again
            return
        if reaction is Reaction.ABSORB:
            return
        if reaction is Reaction.ACK:
            assert txn.request is not None  # client transactions keep their request
            # "The ACK MUST be sent to the same address, port, and transport to which the
            # original request was sent." (§17.1.1.2)
            txn.ack_bytes = bytes(build_ack_for_failure(txn.request, response))
            self._outgoing.append(Outgoing(txn.ack_bytes, txn.flow))
        self._events.append(
            ResponseReceived(response=response, transaction_id=txn.id, flow=flow, received_at=now)
        )

    # ---- outbound ---------------------------------------------------------------------------

    def send_request(self, request: Request, flow: Flow, now: float) -> int:
        """Start a client transaction for ``request`` (its top Via must carry a branch)."""
        if request.method == "ACK":
            raise LocalProtocolError("ACK for a 2xx is sent with send_stateless (§17.1.1.3)")
        branch = request.top_via.branch
        if not branch or not branch.startswith(MAGIC_COOKIE):
            raise LocalProtocolError("client requests need a z9hG4bK branch (§8.1.1.7)")
        machine = Machine.ICT if request.method == "INVITE" else Machine.NICT
        key = client_key(branch, request.method)
        if key in self._transactions:
            raise LocalProtocolError(f"branch {branch} is already in use")
        txn = self._create(machine, key, request, flow, now)
        txn.request_bytes = bytes(request)
        self._outgoing.append(Outgoing(txn.request_bytes, flow))
        return txn.id

    def send_response(self, transaction_id: int, response: Response, now: float) -> None:
        """The TU answers the server transaction ``transaction_id``. A response its machine
        has no row for (a second final response, say) raises :class:`LocalProtocolError`."""
        txn = self._by_id.get(transaction_id)
        if txn is None or not txn.server:
            raise LocalProtocolError(f"no server transaction {transaction_id}")
        if self._apply(txn, _response_input(response.status_code), now) is not Reaction.SEND:
            return
        data = bytes(response)
        txn.last_response_bytes = data
        dest = self._response_dest(txn)
        self._outgoing.append(Outgoing(data, dest))
        if response.status_code >= 200:
            txn.final_status = response.status_code
            txn.response_dest = dest
            txn.request = None

    def cancel_sent(self, transaction_id: int, now: float) -> None:
        """The TU sent a CANCEL for the INVITE client transaction ``transaction_id``: the
        ``CANCEL_SENT`` rows of :data:`TRANSITIONS` re-arm Timer B (§9.1)."""
        txn = self._by_id.get(transaction_id)
        if txn is not None and txn.machine is Machine.ICT:
            self._apply(txn, Input.CANCEL_SENT, now)

    def send_stateless(self, data: bytes, flow: Flow) -> None:
        """Send outside any transaction: ACK for 2xx, or a 400 for an unparseable request."""
        self._outgoing.append(Outgoing(data, flow))

    def find_invite_server_transaction(self, cancel: Request) -> Transaction | None:
        """§9.2: the INVITE a CANCEL targets has the same key but for the method."""
        key = server_key(cancel)
        return self._transactions.get((*key[:-1], "INVITE"))

    # ---- internals --------------------------------------------------------------------------

    def _create(
        self, machine: Machine, key: tuple[str, ...], request: Request, flow: Flow, now: float
    ) -> Transaction:
        state = INITIAL_STATE[machine]
        txn = Transaction(self._next_id, machine, key, request, flow, state, method=request.method)
        self._next_id += 1
        self._transactions[key] = txn
        self._by_id[txn.id] = txn
        self._run(txn, ON_ENTER[(machine, state, flow.reliable)], now)
        return txn

    def _apply(self, txn: Transaction, event: Input, now: float) -> Reaction:
        before = txn.state
        step = txn.advance(event)
        if step.to is not before:
            self._run(txn, ON_ENTER[(txn.machine, step.to, txn.flow.reliable)], now)
        self._run(txn, step.timers, now)
        return step.reaction

    def _run(self, txn: Transaction, plan: TimerPlan, now: float) -> None:
        for timer in plan.cancel:
            self._heap.cancel((txn.id, timer))
        for timer, delay in plan.arm:
            seconds = delay(self.timers, txn.retransmit_interval)
            if TIMER_INPUT[timer] is Input.RETRANSMIT:
                txn.retransmit_interval = seconds
            self._heap.arm((txn.id, timer), now + seconds)

    def _on_timer(self, txn: Transaction, timer: Timer, now: float) -> None:
        event = TIMER_INPUT[timer]
        if self._apply(txn, event, now) is Reaction.RESEND:
            self._resend(txn)
        if txn.state is State.TERMINATED:
            # Only timers lead to Terminated in these tables; ON_ENTER cancelled the rest.
            self._destroy(txn, timed_out=f"Timer {timer}" if event is Input.TIMEOUT else None)

    def _destroy(self, txn: Transaction, *, timed_out: str | None) -> None:
        """Drop ``txn``: "Once the transaction is in the terminated state, it MUST be
        destroyed immediately." (§17.1.2.2). The TU hears whether it timed out."""
        self._transactions.pop(txn.key, None)
        self._by_id.pop(txn.id, None)
        if timed_out:
            self._events.append(
                TransactionTimedOut(
                    transaction_id=txn.id, method=txn.method, server=txn.server, reason=timed_out
                )
            )
        else:
            self._events.append(TransactionTerminated(transaction_id=txn.id, server=txn.server))

    def _resend(self, txn: Transaction) -> None:
        """§17.1.1.2: "The formal definition of retransmit within the context of the
        transaction layer is to take the message previously sent to the transport layer and
        pass it to the transport layer once more." For a client that is the request, or the
        ACK once an INVITE client sent one; for a server its last response, if it sent any."""
        if not txn.server:
            self._outgoing.append(Outgoing(txn.ack_bytes or txn.request_bytes, txn.flow))
        elif txn.last_response_bytes is not None:
            self._outgoing.append(Outgoing(txn.last_response_bytes, self._response_dest(txn)))

    @staticmethod
    def _response_dest(txn: Transaction) -> Flow:
        if txn.response_dest is not None:
            return txn.response_dest
        assert txn.request is not None  # released only once response_dest is set
        return response_flow(txn.request, txn.flow)


def build_ack_for_failure(invite: Request, response: Response) -> Request:
    """§17.1.1.3: the ACK for a non-2xx final response, built by the client transaction.

    Same Request-URI, Call-ID, From, top Via (only) and CSeq number as the INVITE; To from
    the response (with its tag); Route headers of the INVITE."""
    ack = Request(method="ACK", uri=invite.uri)
    ack.headers.add("Via", invite.headers.get_all("Via")[0])
    for name in ("Max-Forwards", "From"):
        value = invite.headers.get(name)
        if value is not None:
            ack.headers.add(name, value)
    ack.headers.add("To", response.headers.get("To") or "")
    ack.headers.add("Call-ID", invite.call_id)
    ack.headers.add("CSeq", f"{invite.cseq.number} ACK")
    for route in invite.headers.get_all("Route"):
        ack.headers.add("Route", route)
    return ack
