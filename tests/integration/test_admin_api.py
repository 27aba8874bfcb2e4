"""Admin API and dial-in on real bridged calls: permissions and team scoping (HTTP and SIP),
ending calls with confirmation and audit, automatic end of stuck calls, dial-in monitoring
with DTMF mode changes and moving to the next call."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from .test_monitoring import (
    AGENT_HZ,
    CALLER_HZ,
    SIP_PASSWORD,
    SUPERVISOR_HZ,
    TOKENS,
    Harness,
    run_with_engine,
    sipp_peer,
)


def test_refusals_by_permission_and_team_over_http(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        b = await h.bridged_call(agent="a1")  # team sales
        path = f"/calls/{b.call.call_id}"
        status, _ = await h.api("GET", "/calls", token=None)
        assert status == 401
        status, _ = await h.api("GET", "/calls", token="not-a-token")
        assert status == 401
        status, doc = await h.api("GET", "/openapi.json", token=None)
        assert status == 200 and doc["openapi"].startswith("3.")
        # An agent has no monitoring rights.
        status, refused = await h.api(
            "POST", f"{path}/monitor", {"mode": "listen"}, token=TOKENS["nobody"]
        )
        assert status == 403, refused
        # A listen-only role may not coach or barge.
        for mode in ("coach", "barge"):
            status, refused = await h.api(
                "POST", f"{path}/monitor", {"mode": mode}, token=TOKENS["trainee"]
            )
            assert status == 403 and "monitor." + mode in refused["error"]
        # A manager of another team sees nothing of the call and may not touch it.
        status, calls = await h.api("GET", "/calls", token=TOKENS["mgr_support"])
        assert status == 200 and calls["calls"] == []
        for method, suffix, payload in (
            ("GET", "", None),
            ("POST", "/monitor", {"mode": "listen"}),
            ("POST", "/end", {}),
        ):
            status, refused = await h.api(
                method, path + suffix, payload, token=TOKENS["mgr_support"]
            )
            assert status == 403, (method, suffix, refused)
        # The manager of the call's team sees it, with its details.
        status, calls = await h.api(
            "GET", "/calls?state=connected&agent=a1", token=TOKENS["mgr_sales"]
        )
        assert [c["id"] for c in calls["calls"]] == [b.call.call_id]
        status, calls = await h.api("GET", "/calls?state=queued", token=TOKENS["mgr_sales"])
        assert calls["calls"] == []
        status, calls = await h.api("GET", "/calls?number=555000", token=TOKENS["root"])
        assert len(calls["calls"]) == 1
        status, agents = await h.api("GET", "/agents", token=TOKENS["mgr_sales"])
        assert [a["id"] for a in agents["agents"]] == ["a1"]
        assert agents["agents"][0]["current_call"]["id"] == b.call.call_id
        status, _ = await h.api("GET", "/audit", token=TOKENS["mgr_sales"])
        assert status == 403, "the audit trail is for admins"
        assert not h.engine.supervision.monitors
        b.hangup("done")

    run_with_engine(tmp_path, body)


def test_end_call_needs_confirmation_ends_both_legs_and_is_audited(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        b = await h.bridged_call(agent="a1")
        phone, sup = await h.supervisor_phone("sup", SUPERVISOR_HZ)
        view = await h.monitor(b.call, TOKENS["sam"], "listen", phone.port)
        path = f"/calls/{b.call.call_id}/end"
        status, refused = await h.api("POST", path, {}, token=TOKENS["sam"])
        assert status == 403, "supervisors do not have calls.end by default"
        status, first = await h.api("POST", path, {}, token=TOKENS["mgr_sales"])
        assert status == 202 and first["call"]["id"] == b.call.call_id, first
        assert b.call.ended.is_set() is False, "the first step ends nothing"
        status, _ = await h.api("POST", path, {"confirm": "forged"}, token=TOKENS["mgr_sales"])
        assert status == 409
        status, _ = await h.api("POST", path, {"confirm": first["confirm"]}, token=TOKENS["root"])
        assert status == 409, "the token belongs to the user who asked"
        status, done = await h.api(
            "POST", path, {"confirm": first["confirm"]}, token=TOKENS["mgr_sales"]
        )
        assert status == 200 and done["ended"] is True, done
        # Both legs and the monitor leg got a BYE and answered it.
        assert await b.uac.wait() == 0 and await b.uas.wait() == 0 and await phone.wait() == 0
        assert b.uac.requests_received() == ["BYE"]
        assert b.uas.requests_received() == ["INVITE", "ACK", "BYE"]
        await h.until(lambda: not h.engine.calls and not h.engine.outbound)
        status, audit = await h.api("GET", f"/audit?call_id={b.call.call_id}")
        rows = [(r["who"], r["action"]) for r in audit["audit"]]
        assert rows == [
            ("sam", "monitor.start"),
            ("mgr_sales", "call.end"),
            ("sam", "monitor.stop"),
        ], rows
        end = audit["audit"][1]
        assert end["details"] == {
            "reason": "ended by mgr_sales",
            "state": "connected",
            "agent": "a1",
            "queue": "support",
        }
        assert audit["audit"][2]["details"]["reason"] == "call ended"
        del view, sup

    run_with_engine(tmp_path, body)


def test_stuck_calls_are_ended_automatically_with_the_reason(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        b = await h.bridged_call(agent="a2")
        assert await b.uac.wait(timeout=15) == 0 and await b.uas.wait() == 0
        status, audit = await h.api("GET", f"/audit?call_id={b.call.call_id}")
        assert [(r["who"], r["action"], r["details"]["reason"]) for r in audit["audit"]] == [
            ("system", "call.end", "stuck: connected for more than 2 s")
        ]

    run_with_engine(
        tmp_path,
        body,
        monitoring={
            "stuck_calls": {
                "enabled": True,
                "connected_seconds": 2,
                "queued_seconds": 2,
                "check_every_seconds": 0.5,
            }
        },
    )


def test_dial_in_refused_without_permission_or_outside_the_team(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        b = await h.bridged_call(agent="a1")
        sip_port = h.engine.listening[0][2]
        for user, service, expect in (
            ("nobody", "*55a1", "403"),
            ("mgr_support", "*55a1", "403"),
            ("sam", "*55a9", "404"),
        ):
            rtp = h.tone(None)
            peer = h.peer(
                sipp_peer(
                    h.tmp,
                    f"dialin-{user}",
                    rtp.port,
                    uac_to=sip_port,
                    service=service,
                    scenario="mon_uac_dialin_refused.xml",
                    keys={"user": user},
                    subst={"expect": expect, "auth_user": user, "auth_pass": SIP_PASSWORD},
                )
            )
            assert await peer.wait() == 0, (user, peer.log.read_text()[-1500:])
        # A wrong password is refused too.
        peer = h.peer(
            sipp_peer(
                h.tmp,
                "dialin-badpass",
                h.tone(None).port,
                uac_to=sip_port,
                service="*55a1",
                scenario="mon_uac_dialin_refused.xml",
                keys={"user": "sam"},
                subst={"expect": "403", "auth_user": "sam", "auth_pass": "wrong"},
            )
        )
        assert await peer.wait() == 0
        assert not h.engine.supervision.monitors
        b.hangup("done")
        assert await b.uas.wait() == 0 and b.uas.requests_received() == ["INVITE", "ACK", "BYE"]

    run_with_engine(tmp_path, body)


def test_dial_in_listens_switches_to_coach_by_dtmf_and_moves_to_the_next_call(
    tmp_path: Path,
) -> None:
    async def body(h: Harness) -> None:
        first = await h.bridged_call(agent="a1")
        second = await h.bridged_call(
            agent="a2", caller="+15550003333", caller_hz=700.0, agent_hz=1400.0
        )
        sip_port = h.engine.listening[0][2]
        sup = h.tone(SUPERVISOR_HZ)
        phone = h.peer(
            sipp_peer(
                h.tmp,
                "dialin-sam",
                sup.port,
                uac_to=sip_port,
                service="*55a1",
                scenario="mon_uac_dialin.xml",
                keys={"user": "sam", "key1": "2", "key2": "*"},
                subst={"auth_user": "sam", "auth_pass": SIP_PASSWORD, "listen_ms": "1800"},
            )
        )
        monitor = await h.until(lambda: next(iter(h.engine.supervision.monitors.values()), None))
        assert monitor.via == "dial-in" and monitor.call is first.call
        await h.until(lambda: monitor.state == "active")
        assert monitor.leg is not None and monitor.leg.rtp is not None
        sup.send_to(monitor.leg.rtp.local_port)
        t0 = time.monotonic()
        await h.until(lambda: monitor.mode.value == "coach", timeout=5)
        t1 = time.monotonic()
        await h.until(lambda: monitor.call is second.call, timeout=5)
        t2 = time.monotonic()
        assert await phone.wait() == 0, phone.log.read_text()[-2000:]
        t3 = time.monotonic()
        listen, coach, moved = (t0 + 0.3, t1), (t1 + 0.3, t2), (t2 + 0.3, t3 - 0.1)
        assert sup.hears(CALLER_HZ, *listen) > 0.15 and sup.hears(AGENT_HZ, *listen) > 0.15
        assert first.agent.hears(SUPERVISOR_HZ, *listen) < 0.01
        assert first.agent.hears(SUPERVISOR_HZ, *coach) > 0.1
        assert first.caller.hears(SUPERVISOR_HZ, *coach) < 0.01
        assert sup.hears(700.0, *moved) > 0.15 and sup.hears(1400.0, *moved) > 0.15
        assert sup.hears(CALLER_HZ, *moved) < 0.01
        # On the next call the supervisor went on in coach mode (sam may coach anywhere).
        assert second.agent.hears(SUPERVISOR_HZ, *moved) > 0.1
        await h.until(lambda: not h.engine.supervision.monitors)
        for b in (first, second):
            b.hangup("done")
            assert await b.uas.wait() == 0
            assert b.uas.requests_received() == ["INVITE", "ACK", "BYE"]
        status, audit = await h.api("GET", "/audit")
        rows = [
            (r["call_id"], r["action"], r["details"].get("mode"), r["details"].get("reason"))
            for r in audit["audit"]
        ]
        c1, c2 = first.call.call_id, second.call.call_id
        assert rows == [
            (c1, "monitor.start", "listen", None),
            (c1, "monitor.mode", "coach", None),
            (c1, "monitor.stop", "coach", "moved to next call"),
            (c2, "monitor.start", "coach", None),
            (c2, "monitor.stop", "coach", "supervisor hung up"),
        ], rows
        await asyncio.sleep(0)

    run_with_engine(tmp_path, body)


def test_cli_lists_calls_and_agents_and_ends_a_call(tmp_path: Path) -> None:
    import sys

    async def cli(h: Harness, *args: str) -> tuple[int, str]:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "ivr.cli",
            *args,
            "--api",
            f"127.0.0.1:{h.admin_port}",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env={**__import__("os").environ, "SWITCHHOOK_TOKEN": TOKENS["root"]},
        )
        out, _ = await process.communicate()
        return process.returncode or 0, out.decode()

    async def body(h: Harness) -> None:
        b = await h.bridged_call(agent="a1")
        code, out = await cli(h, "calls", "--state", "connected")
        assert code == 0 and b.call.call_id in out and "connected" in out, out
        code, out = await cli(h, "agents")
        assert code == 0 and "a1" in out and b.call.call_id in out, out
        code, out = await cli(h, "calls", b.call.call_id)
        assert code == 0 and '"participants"' in out, out
        code, out = await cli(h, "end-call", b.call.call_id, "--yes")
        assert code == 0 and "ended" in out, out
        assert await b.uac.wait() == 0 and await b.uas.wait() == 0

    run_with_engine(tmp_path, body)


def test_monitor_a_call_bridged_by_a_real_queue(engine_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Through the ACD (registered agent phone, queue, whisper, bridge), engine as a process:
    the API lists the queued-then-connected call with its agent and queue, a supervisor is
    attached, the agent's phone sees no new request, and the call's end hangs up the monitor."""
    import http.client
    import json

    from .conftest import free_port
    from .test_monitoring import ToneLeg, sipp_peer, users_config
    from .test_queues import RtpPeer, acd_config, agent_phone, caller, start

    users, roles = users_config()
    admin_port = free_port()
    engine = start(
        engine_factory,
        acd_config(),
        users=users,
        roles=roles,
        admin={"enabled": True, "listen": f"127.0.0.1:{admin_port}"},
    )

    def api(method: str, path: str, body: object = None) -> tuple[int, object]:
        conn = http.client.HTTPConnection("127.0.0.1", admin_port, timeout=10)
        conn.request(
            method,
            path,
            body=None if body is None else json.dumps(body),
            headers={"Authorization": f"Bearer {TOKENS['root']}"},
        )
        response = conn.getresponse()
        data = json.loads(response.read())
        conn.close()
        return response.status, data

    agent_media, caller_media = RtpPeer(0x44, 0), RtpPeer(0x33, 0)
    sup = ToneLeg(SUPERVISOR_HZ)
    try:
        phone = agent_phone(
            engine,
            tmp_path,
            "alice",
            agent_rtp=str(agent_media.port),
            agent_pt="0",
            agent_codec="PCMU",
            answer_ms="200",
        )
        uac = caller(engine, tmp_path, rtp_port=caller_media.port, hold_ms="7000", codecs="0")
        deadline = time.monotonic() + 15
        calls: list[dict[str, object]] = []
        while time.monotonic() < deadline and not calls:
            _, body = api("GET", "/calls?state=connected&agent=alice")
            calls = body["calls"]  # type: ignore[index]
            time.sleep(0.1)
        assert calls and calls[0]["queue"] == "billing", calls
        _, agents = api("GET", "/agents")
        alice = next(a for a in agents["agents"] if a["id"] == "alice")  # type: ignore[index]
        assert alice["current_call"]["id"] == calls[0]["id"]
        _, queues = api("GET", "/queues")
        billing = next(q for q in queues["queues"] if q["queue"] == "billing")  # type: ignore[index]
        assert billing["agents_on_call"] == 1, billing
        status, targets = api("GET", "/transfer-targets")
        assert status == 200
        assert [q["queue"] for q in targets["queues"]] == ["billing"]  # type: ignore[index]
        import subprocess
        import sys

        shown = subprocess.run(
            [
                sys.executable,
                "-m",
                "ivr.cli",
                "queues",
                "--api",
                f"127.0.0.1:{admin_port}",
                "--token",
                TOKENS["root"],
            ],
            capture_output=True,
            text=True,
            timeout=20,
        )
        assert shown.returncode == 0 and "billing" in shown.stdout, shown.stdout + shown.stderr
        monitor_phone = sipp_peer(tmp_path, "queue-sup", sup.port)
        time.sleep(0.3)
        status, view = api(
            "POST",
            f"/calls/{calls[0]['id']}/monitor",
            {"mode": "listen", "target": f"sip:sup@127.0.0.1:{monitor_phone.port}"},
        )
        assert status == 202, view
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and view["state"] != "active":  # type: ignore[index]
            time.sleep(0.1)
            _, view = api("GET", f"/monitors/{view['id']}")  # type: ignore[index]
        assert view["state"] == "active", view  # type: ignore[index]
        assert uac.wait(40) == 0, uac.errors
        assert phone.wait(20) == 0, phone.errors
        assert monitor_phone.process.wait(20) == 0, "the monitor was hung up at the call's end"
        assert len(sup.packets) >= 50, "the supervisor received the mix"
        assert len(phone.received("INVITE")) == 1, "no re-INVITE to the agent"
        _, audit = api("GET", f"/audit?call_id={calls[0]['id']}")
        assert [(r["action"], r["details"]["agent"]) for r in audit["audit"]] == [  # type: ignore[index]
            ("monitor.start", "alice"),
            ("monitor.stop", "alice"),
        ]
    finally:
        agent_media.close()
        caller_media.close()
        sup.close()
