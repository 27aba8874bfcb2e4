"""SIP transaction layer (RFC 3261 §17, amended by RFC 6026), sans-IO.

Four state machines, each with its transition table in this file: INVITE client (§17.1.1),
non-INVITE client (§17.1.2), INVITE server (§17.2.1), non-INVITE server (§17.2.2). RFC 6026
adds the ``ACCEPTED`` state to both INVITE machines so that 2xx retransmissions and their
ACKs are handled by the transaction user and INVITE retransmissions are absorbed.

The layer never reads a clock or touches a socket: every entry point takes ``now``; what it
wants sent is queued as :class:`Outgoing`; :meth:`TransactionLayer.get_timer` /
:meth:`TransactionLayer.handle_timer` drive retransmissions and time-outs.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field
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
    error response, §17.2.1), or L/M ended an ACCEPTED INVITE transaction."""

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
# States and transition tables
# ---------------------------------------------------------------------------------------------


class State(enum.Enum):
    CALLING = "Calling"
    TRYING = "Trying"
    PROCEEDING = "Proceeding"
    ACCEPTED = "Accepted"  # RFC 6026 §7.1 / §7.2
    COMPLETED = "Completed"
    CONFIRMED = "Confirmed"
    TERMINATED = "Terminated"


class Input(enum.Enum):
    PROVISIONAL = "1xx"
    SUCCESS = "2xx"
    FAILURE = "300-699"
    ACK = "ACK"
    TIMEOUT = "timeout"
    DONE = "done"  # timer D, I, J, K, L, M: linger period over


S, In = State, Input
#: (machine, state, input) -> next state. Anything not listed is illegal for that machine.
TRANSITIONS: dict[tuple[str, State, Input], State] = {
    # INVITE client, §17.1.1.2 + RFC 6026 §7.2 (Figure 5)
    ("ict", S.CALLING, In.PROVISIONAL): S.PROCEEDING,
    ("ict", S.CALLING, In.SUCCESS): S.ACCEPTED,
    ("ict", S.CALLING, In.FAILURE): S.COMPLETED,
    ("ict", S.CALLING, In.TIMEOUT): S.TERMINATED,
    ("ict", S.PROCEEDING, In.PROVISIONAL): S.PROCEEDING,
    ("ict", S.PROCEEDING, In.SUCCESS): S.ACCEPTED,
    ("ict", S.PROCEEDING, In.FAILURE): S.COMPLETED,
    # §9.1: no final response 64*T1 after our CANCEL -> the transaction is destroyed.
    ("ict", S.PROCEEDING, In.TIMEOUT): S.TERMINATED,
    ("ict", S.ACCEPTED, In.SUCCESS): S.ACCEPTED,
    ("ict", S.ACCEPTED, In.DONE): S.TERMINATED,
    ("ict", S.COMPLETED, In.FAILURE): S.COMPLETED,
    ("ict", S.COMPLETED, In.DONE): S.TERMINATED,
    # non-INVITE client, §17.1.2.2
    ("nict", S.TRYING, In.PROVISIONAL): S.PROCEEDING,
    ("nict", S.TRYING, In.SUCCESS): S.COMPLETED,
    ("nict", S.TRYING, In.FAILURE): S.COMPLETED,
    ("nict", S.TRYING, In.TIMEOUT): S.TERMINATED,
    ("nict", S.PROCEEDING, In.PROVISIONAL): S.PROCEEDING,
    ("nict", S.PROCEEDING, In.SUCCESS): S.COMPLETED,
    ("nict", S.PROCEEDING, In.FAILURE): S.COMPLETED,
    ("nict", S.PROCEEDING, In.TIMEOUT): S.TERMINATED,
    ("nict", S.COMPLETED, In.DONE): S.TERMINATED,
    # INVITE server, §17.2.1 + RFC 6026 §7.1 (Figure 7); inputs are what the TU sends
    ("ist", S.PROCEEDING, In.PROVISIONAL): S.PROCEEDING,
    ("ist", S.PROCEEDING, In.SUCCESS): S.ACCEPTED,
    ("ist", S.PROCEEDING, In.FAILURE): S.COMPLETED,
    ("ist", S.ACCEPTED, In.SUCCESS): S.ACCEPTED,  # TU's 2xx retransmissions pass through
    ("ist", S.ACCEPTED, In.DONE): S.TERMINATED,
    ("ist", S.COMPLETED, In.ACK): S.CONFIRMED,
    ("ist", S.COMPLETED, In.TIMEOUT): S.TERMINATED,
    ("ist", S.CONFIRMED, In.DONE): S.TERMINATED,
    # non-INVITE server, §17.2.2
    ("nist", S.TRYING, In.PROVISIONAL): S.PROCEEDING,
    ("nist", S.TRYING, In.SUCCESS): S.COMPLETED,
    ("nist", S.TRYING, In.FAILURE): S.COMPLETED,
    ("nist", S.PROCEEDING, In.PROVISIONAL): S.PROCEEDING,
    ("nist", S.PROCEEDING, In.SUCCESS): S.COMPLETED,
    ("nist", S.PROCEEDING, In.FAILURE): S.COMPLETED,
    ("nist", S.COMPLETED, In.DONE): S.TERMINATED,
}
del S, In


def _response_input(status_code: int) -> Input:
    if status_code < 200:
        return Input.PROVISIONAL
    if status_code < 300:
        return Input.SUCCESS
    return Input.FAILURE


@dataclass(slots=True, eq=False)
class Transaction:
    """State of one transaction. Mutated only by :class:`TransactionLayer`."""

    id: int
    machine: str  # "ict" | "nict" | "ist" | "nist"
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
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def server(self) -> bool:
        return self.machine in ("ist", "nist")

    def advance(self, event: Input) -> State:
        try:
            self.state = TRANSITIONS[(self.machine, self.state, event)]
        except KeyError:
            raise LocalProtocolError(
                f"{self.machine}: no transition from {self.state.value} on {event.value}"
            ) from None
        return self.state


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
    """All transactions of one SIP endpoint."""

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
            tid, name = cast(tuple[int, str], key)
            txn = self._by_id.get(tid)
            if txn is not None:
                self._on_timer(txn, name, now)

    def __len__(self) -> int:
        return len(self._by_id)

    def get(self, transaction_id: int) -> Transaction | None:
        return self._by_id.get(transaction_id)

    # ---- inbound ----------------------------------------------------------------------------

    def receive_request(self, request: Request, flow: Flow, now: float) -> None:
        """A parsed request arrived (its Via already stamped by :func:`stamp_via`)."""
        key = server_key(request)
        txn = self._transactions.get(key)
        if request.method == "ACK":
            if txn is not None and txn.machine == "ist":
                self._server_ack(txn, request, flow, now)
            else:
                # ACK for a 2xx is its own transaction-less request (§17.1.1.3).
                self._events.append(AckReceived(request=request, flow=flow, received_at=now))
            return
        if txn is not None:
            self._absorb_retransmission(txn)
            return
        machine = "ist" if request.method == "INVITE" else "nist"
        state = State.PROCEEDING if machine == "ist" else State.TRYING
        txn = self._create(machine, key, request, flow, state)
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
        if txn.machine == "ict":
            self._ict_response(txn, response, flow, now)
        else:
            self._nict_response(txn, response, flow, now)

    # ---- outbound ---------------------------------------------------------------------------

    def send_request(self, request: Request, flow: Flow, now: float) -> int:
        """Start a client transaction for ``request`` (its top Via must carry a branch)."""
        if request.method == "ACK":
            raise LocalProtocolError("ACK for a 2xx is sent with send_stateless (§17.1.1.3)")
        branch = request.top_via.branch
        if not branch or not branch.startswith(MAGIC_COOKIE):
            raise LocalProtocolError("client requests need a z9hG4bK branch (§8.1.1.7)")
        machine = "ict" if request.method == "INVITE" else "nict"
        state = State.CALLING if machine == "ict" else State.TRYING
        key = client_key(branch, request.method)
        if key in self._transactions:
            raise LocalProtocolError(f"branch {branch} is already in use")
        txn = self._create(machine, key, request, flow, state)
        txn.request_bytes = bytes(request)
        self._outgoing.append(Outgoing(txn.request_bytes, flow))
        t1 = self.timers.t1_seconds
        if not flow.reliable:
            # Timer A (INVITE) / E (non-INVITE) start at T1 (§17.1.1.2, §17.1.2.2).
            txn.retransmit_interval = t1
            self._arm(txn, "A" if machine == "ict" else "E", now + t1)
        self._arm(txn, "B" if machine == "ict" else "F", now + self.timers.timeout_seconds)
        return txn.id

    def send_response(self, transaction_id: int, response: Response, now: float) -> None:
        """The TU answers the server transaction ``transaction_id``."""
        txn = self._by_id.get(transaction_id)
        if txn is None or not txn.server:
            raise LocalProtocolError(f"no server transaction {transaction_id}")
        event = _response_input(response.status_code)
        if txn.state in (State.COMPLETED, State.CONFIRMED, State.TERMINATED):
            raise LocalProtocolError(
                f"transaction {transaction_id} already answered with a final response"
            )
        state = txn.advance(event)  # a fresh name: mypy would keep the narrowing above
        data = bytes(response)
        txn.last_response_bytes = data
        dest = txn.response_dest
        if dest is None:
            assert txn.request is not None
            dest = response_flow(txn.request, txn.flow)
        self._outgoing.append(Outgoing(data, dest))
        if response.status_code >= 200:
            txn.final_status = response.status_code
            txn.response_dest = dest
            txn.request = None
        t1, reliable = self.timers.t1_seconds, txn.flow.reliable
        if txn.machine == "ist":
            if state is State.ACCEPTED and "L" not in txn.extra:
                # RFC 6026 §7.1: Timer L = 64*T1 keeps absorbing INVITE retransmissions.
                txn.extra["L"] = True
                self._arm(txn, "L", now + self.timers.timeout_seconds)
            elif state is State.COMPLETED:
                if not reliable:
                    txn.retransmit_interval = t1
                    self._arm(txn, "G", now + t1)  # §17.2.1: Timer G = T1
                self._arm(txn, "H", now + self.timers.timeout_seconds)
        elif state is State.COMPLETED:
            # §17.2.2: Timer J = 64*T1 for unreliable transports, zero for reliable ones.
            self._arm(txn, "J", now + (0.0 if reliable else self.timers.timeout_seconds))

    def cancel_sent(self, transaction_id: int, now: float) -> None:
        """The TU sent a CANCEL for the INVITE client transaction ``transaction_id``.

        §9.1: "If there is no final response for the original request in 64*T1 seconds ...
        the client SHOULD then consider the original transaction cancelled and SHOULD
        destroy the client transaction handling the original request." Re-arms Timer B."""
        txn = self._by_id.get(transaction_id)
        if (
            txn is not None
            and txn.machine == "ict"
            and txn.state in (State.CALLING, State.PROCEEDING)
        ):
            self._arm(txn, "B", now + self.timers.timeout_seconds)

    def send_stateless(self, data: bytes, flow: Flow) -> None:
        """Send outside any transaction: ACK for 2xx, or a 400 for an unparseable request."""
        self._outgoing.append(Outgoing(data, flow))

    def find_invite_server_transaction(self, cancel: Request) -> Transaction | None:
        """§9.2: the INVITE a CANCEL targets has the same key but for the method."""
        key = server_key(cancel)
        return self._transactions.get((*key[:-1], "INVITE"))

    # ---- internals --------------------------------------------------------------------------

    def _create(
        self, machine: str, key: tuple[str, ...], request: Request, flow: Flow, state: State
    ) -> Transaction:
        txn = Transaction(self._next_id, machine, key, request, flow, state, method=request.method)
        self._next_id += 1
        self._transactions[key] = txn
        self._by_id[txn.id] = txn
        return txn

    def _arm(self, txn: Transaction, name: str, deadline: float) -> None:
        self._heap.arm((txn.id, name), deadline)

    def _terminate(self, txn: Transaction, *, timed_out: str | None = None) -> None:
        for name in "ABDEFGHIJKLM":
            self._heap.cancel((txn.id, name))
        self._transactions.pop(txn.key, None)
        self._by_id.pop(txn.id, None)
        txn.state = State.TERMINATED
        if timed_out:
            self._events.append(
                TransactionTimedOut(
                    transaction_id=txn.id, method=txn.method, server=txn.server, reason=timed_out
                )
            )
        else:
            self._events.append(TransactionTerminated(transaction_id=txn.id, server=txn.server))

    def _absorb_retransmission(self, txn: Transaction) -> None:
        """§17.2.1/§17.2.2: a retransmitted request re-sends the last response, if any; in
        ACCEPTED (RFC 6026) the INVITE is absorbed and the TU keeps retransmitting its 2xx."""
        if txn.state is State.ACCEPTED:
            return
        if txn.last_response_bytes is not None and txn.state in (State.PROCEEDING, State.COMPLETED):
            dest = txn.response_dest
            if dest is None:
                assert txn.request is not None
                dest = response_flow(txn.request, txn.flow)
            self._outgoing.append(Outgoing(txn.last_response_bytes, dest))

    def _server_ack(self, txn: Transaction, ack: Request, flow: Flow, now: float) -> None:
        if txn.state is State.COMPLETED:
            txn.advance(Input.ACK)
            self._heap.cancel((txn.id, "G"))
            self._heap.cancel((txn.id, "H"))
            # §17.2.1: Timer I = T4 for unreliable transports, zero for reliable.
            self._arm(txn, "I", now + (0.0 if txn.flow.reliable else self.timers.t4_seconds))
        # ACK in CONFIRMED is a retransmission: absorbed. ACK in ACCEPTED would be the 2xx ACK
        # of a peer reusing the INVITE branch (RFC 2543 style): hand it to the TU.
        elif txn.state is State.ACCEPTED:
            self._events.append(AckReceived(request=ack, flow=flow, received_at=now))

    def _ict_response(self, txn: Transaction, response: Response, flow: Flow, now: float) -> None:
        event = _response_input(response.status_code)
        previous = txn.state
        if previous is State.COMPLETED and event is Input.FAILURE:
            # §17.1.1.2: retransmitted final response -> re-send the ACK, not passed up.
            if txn.ack_bytes:
                self._outgoing.append(Outgoing(txn.ack_bytes, txn.flow))
            return
        if previous is State.ACCEPTED and event is not Input.SUCCESS:
            return
        if (previous, event) in (
            (State.COMPLETED, Input.PROVISIONAL),
            (State.COMPLETED, Input.SUCCESS),
            (State.ACCEPTED, Input.PROVISIONAL),
        ):
            return
        txn.advance(event)
        self._heap.cancel((txn.id, "A"))
        if txn.state is State.PROCEEDING and previous is State.CALLING:
            # §17.1.1.2 (Figure 5): Timer B only guards the Calling state; a callee may ring
            # for as long as it likes (the TU CANCELs, see :meth:`cancel_sent`).
            self._heap.cancel((txn.id, "B"))
        if txn.state is State.COMPLETED:
            self._heap.cancel((txn.id, "B"))
            assert txn.request is not None  # client transactions keep their request
            txn.ack_bytes = bytes(build_ack_for_failure(txn.request, response))
            self._outgoing.append(Outgoing(txn.ack_bytes, txn.flow))
            # §17.1.1.2: Timer D >= 32 s for unreliable transports, zero for reliable.
            self._arm(txn, "D", now + (0.0 if txn.flow.reliable else 32.0))
        elif txn.state is State.ACCEPTED and previous is not State.ACCEPTED:
            self._heap.cancel((txn.id, "B"))
            self._arm(txn, "M", now + self.timers.timeout_seconds)  # RFC 6026 §7.2
        self._events.append(
            ResponseReceived(response=response, transaction_id=txn.id, flow=flow, received_at=now)
        )

    def _nict_response(self, txn: Transaction, response: Response, flow: Flow, now: float) -> None:
        if txn.state is State.COMPLETED:
            return  # §17.1.2.2: retransmitted final responses are absorbed
        event = _response_input(response.status_code)
        state = txn.advance(event)
        # §17.1.2.2: in Proceeding, Timer E keeps its deadline and is then "reset with a value
        # of T2 seconds" each time it fires (see _on_timer); a provisional never re-arms it,
        # or retransmitted provisionals would postpone the retransmission indefinitely.
        if state is State.COMPLETED:
            self._heap.cancel((txn.id, "E"))
            self._heap.cancel((txn.id, "F"))
            # Timer K = T4 for unreliable transports, zero for reliable.
            self._arm(txn, "K", now + (0.0 if txn.flow.reliable else self.timers.t4_seconds))
        self._events.append(
            ResponseReceived(response=response, transaction_id=txn.id, flow=flow, received_at=now)
        )

    def _on_timer(self, txn: Transaction, name: str, now: float) -> None:
        t2 = self.timers.t2_seconds
        if name == "A":  # §17.1.1.2: retransmit INVITE, double A
            if txn.state is State.CALLING:
                self._outgoing.append(Outgoing(txn.request_bytes, txn.flow))
                txn.retransmit_interval *= 2
                self._arm(txn, "A", now + txn.retransmit_interval)
        elif name == "E":  # §17.1.2.2: retransmit, E = min(2E, T2) (T2 once Proceeding)
            if txn.state in (State.TRYING, State.PROCEEDING):
                self._outgoing.append(Outgoing(txn.request_bytes, txn.flow))
                if txn.state is State.TRYING:
                    txn.retransmit_interval = min(2 * txn.retransmit_interval, t2)
                else:
                    txn.retransmit_interval = t2
                self._arm(txn, "E", now + txn.retransmit_interval)
        elif name == "G":  # §17.2.1: retransmit the error response, G = min(2G, T2)
            if txn.state is State.COMPLETED and txn.last_response_bytes:
                self._outgoing.append(
                    Outgoing(txn.last_response_bytes, txn.response_dest or txn.flow)
                )
                txn.retransmit_interval = min(2 * txn.retransmit_interval, t2)
                self._arm(txn, "G", now + txn.retransmit_interval)
        elif name in ("B", "F"):
            txn.advance(Input.TIMEOUT)
            self._terminate(txn, timed_out=f"Timer {name}")
        elif name == "H":  # no ACK for our error response
            txn.advance(Input.TIMEOUT)
            self._terminate(txn, timed_out="Timer H")
        elif name in ("D", "I", "J", "K", "L", "M"):
            txn.advance(Input.DONE)
            self._terminate(txn)


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
