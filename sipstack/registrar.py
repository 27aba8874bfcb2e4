"""Registrar (RFC 3261 §10.3), sans-IO: REGISTER requests in, bindings and responses out.

Authentication and authorisation (which AOR a user may register) are the caller's job and
happen before :meth:`Registrar.register` is called. Bindings expire at an absolute ``now``
based deadline; :meth:`Registrar.expire` drops the stale ones. ``snapshot``/``restore`` let
the application persist bindings across restarts.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .errors import RemoteProtocolError
from .message import Request
from .transaction import Flow
from .uri import NameAddr, Uri


@dataclass(frozen=True, slots=True)
class Binding:
    """One contact of an address-of-record (§10.3 step 7)."""

    aor: str
    contact: str  # the Contact URI as registered
    expires_at: float
    call_id: str
    cseq: int
    flow: Flow  # where the REGISTER came from: requests to this contact reuse it (NAT)
    q: float = 1.0
    user_agent: str = ""

    def expires_in(self, now: float) -> int:
        return max(0, round(self.expires_at - now))


@dataclass(frozen=True, slots=True)
class RegisterResult:
    """What to answer: ``status_code`` with ``headers`` (200 lists every current binding)."""

    status_code: int
    reason: str
    headers: tuple[tuple[str, str], ...]
    aor: str
    added: tuple[Binding, ...] = ()
    removed: tuple[Binding, ...] = ()


def aor_of(uri: Uri) -> str:
    """§10.3 step 5: the canonical AOR: scheme, user and host, lower-cased host, no port or
    parameters."""
    return (
        f"{uri.scheme}:{uri.user}@{uri.host.lower()}"
        if uri.user
        else f"{uri.scheme}:{uri.host.lower()}"
    )


class Registrar:
    def __init__(
        self,
        *,
        min_expires: int = 60,
        max_expires: int = 3600,
        default_expires: int = 3600,
        max_contacts_per_aor: int = 10,
    ) -> None:
        self.min_expires = min_expires
        self.max_expires = max_expires
        self.default_expires = default_expires
        self.max_contacts = max_contacts_per_aor
        self._bindings: dict[str, dict[str, Binding]] = {}

    def bindings(self, aor: str, now: float) -> list[Binding]:
        """Live bindings of ``aor``, highest q first."""
        live = [b for b in self._bindings.get(aor, {}).values() if b.expires_at > now]
        return sorted(live, key=lambda b: -b.q)

    def all_bindings(self, now: float) -> list[Binding]:
        return [b for aor in list(self._bindings) for b in self.bindings(aor, now)]

    def expire(self, now: float) -> list[Binding]:
        """Drop expired bindings and return them."""
        gone: list[Binding] = []
        for aor in list(self._bindings):
            contacts = self._bindings[aor]
            for key in [k for k, b in contacts.items() if b.expires_at <= now]:
                gone.append(contacts.pop(key))
            if not contacts:
                del self._bindings[aor]
        return gone

    def snapshot(self) -> list[Binding]:
        return [b for contacts in self._bindings.values() for b in contacts.values()]

    def restore(self, bindings: Iterable[Binding], now: float) -> None:
        for binding in bindings:
            if binding.expires_at > now:
                self._bindings.setdefault(binding.aor, {})[binding.contact] = binding

    def register(self, request: Request, flow: Flow, now: float) -> RegisterResult:
        """Process an authenticated REGISTER (§10.3 steps 5-8)."""
        if request.method != "REGISTER":
            raise ValueError("not a REGISTER")
        try:
            aor = aor_of(request.to.uri)
        except RemoteProtocolError:
            return RegisterResult(400, "Bad To", (), "")
        contacts_raw = request.headers.get_all("Contact")
        expires_header = request.headers.get("Expires")
        default = self.default_expires
        if expires_header is not None:
            if not expires_header.strip().isdigit():
                return RegisterResult(400, "Bad Expires", (), aor)
            default = int(expires_header.strip())
        call_id, cseq = request.call_id, request.cseq.number
        current = self._bindings.setdefault(aor, {})
        added: list[Binding] = []
        removed: list[Binding] = []
        if any(c.strip() == "*" for c in contacts_raw):
            # §10.3 step 6: "*" only alone, with Expires: 0.
            if len(contacts_raw) != 1 or default != 0:
                return RegisterResult(400, "Invalid Wildcard", (), aor)
            for key, binding in list(current.items()):
                if binding.call_id == call_id and cseq <= binding.cseq:
                    continue
                removed.append(current.pop(key))
            return self._ok(aor, now, added, removed)
        parsed: list[tuple[NameAddr, int, float]] = []
        for raw in contacts_raw:
            try:
                contact = NameAddr.parse(raw)
            except RemoteProtocolError:
                return RegisterResult(400, "Bad Contact", (), aor)
            param = dict(contact.params).get("expires")
            expires = default
            if param:
                if not param.isdigit():
                    return RegisterResult(400, "Bad Contact Expires", (), aor)
                expires = int(param)
            if 0 < expires < self.min_expires:
                # §10.3 step 7: 423 Interval Too Brief with Min-Expires.
                return RegisterResult(
                    423, "Interval Too Brief", (("Min-Expires", str(self.min_expires)),), aor
                )
            q_text = dict(contact.params).get("q")
            try:
                q = float(q_text) if q_text else 1.0
            except ValueError:
                return RegisterResult(400, "Bad q", (), aor)
            parsed.append((contact, min(expires, self.max_expires), q))
        user_agent = request.headers.get("User-Agent") or ""
        for contact, expires, q in parsed:
            key = str(contact.uri)
            existing = current.get(key)
            # §10.3 step 7: same Call-ID with a CSeq not higher -> out of order, ignore it.
            if existing is not None and existing.call_id == call_id and cseq <= existing.cseq:
                continue
            if expires == 0:
                if existing is not None:
                    removed.append(current.pop(key))
                continue
            binding = Binding(aor, key, now + expires, call_id, cseq, flow, q, user_agent)
            if existing is None and len(current) >= self.max_contacts:
                oldest = min(current.values(), key=lambda b: b.expires_at)
                removed.append(current.pop(oldest.contact))
            current[key] = binding
            added.append(binding)
        return self._ok(aor, now, added, removed)

    def _ok(
        self, aor: str, now: float, added: list[Binding], removed: list[Binding]
    ) -> RegisterResult:
        if not self._bindings.get(aor):
            self._bindings.pop(aor, None)
        # §10.3 step 8: the 200 lists every current binding with its remaining expiry.
        headers = tuple(
            ("Contact", f"<{b.contact}>;expires={b.expires_in(now)}")
            for b in self.bindings(aor, now)
        )
        return RegisterResult(200, "OK", headers, aor, tuple(added), tuple(removed))
