"""UAC digest retry (RFC 3261 §22.2): a challenged INVITE is re-sent once with credentials."""

from __future__ import annotations

from sipstack.auth import AuthResultKind, DigestServer
from sipstack.ua import CallEstablished, CallFailed, InviteReceived

from .test_ua_pair import Pair, parsed

SERVER = DigestServer("switchhook", b"s" * 32)


def challenge_then_verify(p: Pair, password: str = "pw") -> list[AuthResultKind]:
    """Play a UAS that challenges every INVITE without valid credentials."""
    results = []
    handled = 0
    while handled < len(p.of("b", InviteReceived)):
        invite = p.of("b", InviteReceived)[handled]
        handled += 1
        credentials = invite.request.headers.get("Authorization")
        if credentials is None:
            p.b.reject(
                invite.leg_id,
                401,
                p.now,
                headers=[("WWW-Authenticate", v) for v in SERVER.challenge(p.now)],
            )
        else:
            result = SERVER.verify(
                credentials, method="INVITE", now=p.now, lookup_password=lambda user: password
            )
            results.append(result.kind)
            if result.kind is AuthResultKind.OK:
                p.b.answer(invite.leg_id, b"v=0\r\n", p.now)
            else:
                p.b.reject(invite.leg_id, 403, p.now)
        p.pump()
    return results


def test_challenged_invite_is_resent_with_credentials_and_answered() -> None:
    p = Pair()
    leg = p.call(credentials=("alice", "pw"))
    assert challenge_then_verify(p) == [AuthResultKind.OK]
    assert p.of("a", CallEstablished)[0].leg_id == leg
    invites = [parsed(d) for d in p.datagrams["b"] if d.startswith(b"INVITE")]
    first, second = invites
    # §22.2: same Call-ID and From tag, CSeq incremented, a new branch.
    assert first.call_id == second.call_id
    assert first.from_.tag == second.from_.tag
    assert second.cseq.number == first.cseq.number + 1
    assert first.top_via.branch != second.top_via.branch
    # The 401 was ACKed by the client transaction (§17.1.1.3).
    assert any(
        d.startswith(b"ACK") and b"CSeq: %d ACK" % first.cseq.number in d for d in p.datagrams["b"]
    )
    assert not p.of("a", CallFailed)


def test_wrong_password_fails_after_one_retry() -> None:
    p = Pair()
    p.call(credentials=("alice", "wrong"))
    assert challenge_then_verify(p) == [AuthResultKind.INVALID]
    failed = p.of("a", CallFailed)
    assert [f.status_code for f in failed] == [403]
    assert len([d for d in p.datagrams["b"] if d.startswith(b"INVITE")]) == 2


def test_without_credentials_a_challenge_fails_the_call() -> None:
    p = Pair()
    p.call()
    challenge_then_verify(p)
    assert [f.status_code for f in p.of("a", CallFailed)] == [401]
