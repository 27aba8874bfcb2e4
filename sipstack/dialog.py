"""Dialogs (RFC 3261 §12): identity, route set, remote target, CSeq spaces, request building."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from .errors import RemoteProtocolError
from .message import Request, Response
from .transaction import Flow
from .uri import NameAddr, Uri


@dataclass(frozen=True, slots=True)
class DialogId:
    """§12: Call-ID + local tag + remote tag."""

    call_id: str
    local_tag: str
    remote_tag: str


@dataclass(slots=True, eq=False)
class Dialog:
    id: DialogId
    local_uri: str  # our From/To header value without tag (name-addr text)
    remote_uri: str
    remote_target: Uri
    route_set: list[str]
    local_seq: int
    remote_seq: int | None
    flow: Flow
    secure: bool = False
    local_contact: str = ""
    extra: dict[str, object] = field(default_factory=dict)

    @classmethod
    def as_uas(
        cls, invite: Request, *, local_tag: str, flow: Flow, local_contact: str, local_seq: int
    ) -> Dialog:
        """§12.1.1: UAS side, from the INVITE that creates the dialog."""
        contacts = invite.contacts
        if not contacts:
            raise RemoteProtocolError("INVITE without Contact", reason="Missing Contact")
        from_ = invite.from_
        return cls(
            id=DialogId(invite.call_id, local_tag, from_.tag or ""),
            local_uri=_without_tag(invite.headers.get("To") or ""),
            remote_uri=_without_tag(invite.headers.get("From") or ""),
            remote_target=contacts[0].uri,
            # §12.1.1: route set = Record-Route of the request, in order.
            route_set=invite.headers.get_all("Record-Route"),
            local_seq=local_seq,
            remote_seq=invite.cseq.number,
            flow=flow,
            secure=invite.request_uri.scheme == "sips",
            local_contact=local_contact,
        )

    @classmethod
    def as_uac(cls, invite: Request, response: Response, *, flow: Flow) -> Dialog:
        """§12.1.2: UAC side, from a 1xx-with-tag or 2xx response to our INVITE."""
        contacts = response.contacts
        to = response.to
        target = contacts[0].uri if contacts else invite.request_uri
        return cls(
            id=DialogId(invite.call_id, invite.from_.tag or "", to.tag or ""),
            local_uri=_without_tag(invite.headers.get("From") or ""),
            remote_uri=_without_tag(response.headers.get("To") or ""),
            remote_target=target,
            # §12.1.2: route set = Record-Route of the response, in reverse order.
            route_set=list(reversed(response.headers.get_all("Record-Route"))),
            local_seq=invite.cseq.number,
            remote_seq=None,
            flow=flow,
            local_contact=invite.headers.get("Contact") or "",
        )

    def build_request(
        self, method: str, *, via: str, max_forwards: int = 70, cseq: int | None = None
    ) -> Request:
        """§12.2.1.1: a request within the dialog. ``cseq`` defaults to the next local CSeq
        (ACK and CANCEL pass the INVITE's number)."""
        if cseq is None:
            self.local_seq += 1
            cseq = self.local_seq
        route_set = self.route_set
        uri = str(self.remote_target)
        routes = list(route_set)
        if route_set:
            first = NameAddr.parse(route_set[0])
            if first.uri.param("lr") is None:
                # §12.2.1.1 strict routing: first route becomes the Request-URI.
                uri = str(first.uri)
                routes = [*route_set[1:], f"<{self.remote_target}>"]
        request = Request(method=method, uri=uri)
        headers = request.headers
        headers.add("Via", via)
        headers.add("Max-Forwards", str(max_forwards))
        headers.add("From", _with_tag(self.local_uri, self.id.local_tag))
        headers.add("To", _with_tag(self.remote_uri, self.id.remote_tag))
        headers.add("Call-ID", self.id.call_id)
        headers.add("CSeq", f"{cseq} {method}")
        for route in routes:
            headers.add("Route", route)
        if method in ("INVITE", "UPDATE", "REFER", "SUBSCRIBE", "NOTIFY") and self.local_contact:
            headers.add("Contact", self.local_contact)
        return request

    def next_hop(self) -> tuple[str, int] | None:
        """The numeric address of the first hop (first Route or remote target), or None when
        it is a host name (the adapter then reuses the dialog's flow: no DNS in the core)."""
        uri = NameAddr.parse(self.route_set[0]).uri if self.route_set else self.remote_target
        host = uri.host.strip("[]")
        try:
            ipaddress.ip_address(host)
        except ValueError:
            return None
        return host, uri.port or (5061 if uri.scheme == "sips" else 5060)


def _without_tag(value: str) -> str:
    addr = NameAddr.parse(value)
    params = tuple((k, v) for k, v in addr.params if k != "tag")
    return str(NameAddr(addr.uri, addr.display_name, params, addr.raw_uri))


def _with_tag(value: str, tag: str) -> str:
    if not tag:
        return value
    return str(NameAddr.parse(value).with_tag(tag))
