"""``switchhook calls|agents|monitor|end-call`` against the running engine's admin API, and
``switchhook hash-secret`` to produce the hashes the ``users:`` section holds.

The API address comes from ``--api`` (default: ``admin.listen`` of ``--config``); the token
from ``--token`` or ``SWITCHHOOK_TOKEN``.
"""

from __future__ import annotations

import argparse
import getpass
import http.client
import json
import os
import sys
from typing import Any
from urllib.parse import quote, urlencode

__all__ = ["add_commands"]


class ClientError(Exception):
    pass


def _address(args: argparse.Namespace) -> tuple[str, int]:
    if args.api:
        host, _, port = args.api.rpartition(":")
        return host or "127.0.0.1", int(port)
    from ..config import DEFAULT_CONFIG_PATH, load_settings

    settings = load_settings(args.config or DEFAULT_CONFIG_PATH)
    host, _, port = settings.admin.listen.rpartition(":")
    return host.strip("[]"), int(port)


def request(
    args: argparse.Namespace, method: str, path: str, body: dict[str, Any] | None = None
) -> tuple[int, Any]:
    token = args.token or os.environ.get("SWITCHHOOK_TOKEN")
    if not token:
        raise ClientError("give --token or set SWITCHHOOK_TOKEN")
    host, port = _address(args)
    conn = http.client.HTTPConnection(host, port, timeout=30)
    try:
        conn.request(
            method,
            path,
            body=None if body is None else json.dumps(body),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        response = conn.getresponse()
        data = response.read()
    except OSError as exc:
        raise ClientError(f"cannot reach the admin API at {host}:{port}: {exc}") from None
    finally:
        conn.close()
    return response.status, json.loads(data) if data else None


def _out(args: argparse.Namespace, status: int, body: Any, lines: list[str] | None) -> int:
    if status >= 400:
        print(
            f"error {status}: {body.get('error') if isinstance(body, dict) else body}",
            file=sys.stderr,
        )
        return 1
    if args.json or lines is None:
        print(json.dumps(body, indent=2))
    else:
        for line in lines:
            print(line)
    return 0


def cmd_calls(args: argparse.Namespace) -> int:
    if args.id:
        status, body = request(args, "GET", f"/calls/{quote(args.id, safe='')}")
        return _out(args, status, body, None)
    query = {
        k: v
        for k, v in (
            ("state", args.state),
            ("agent", args.agent),
            ("queue", args.queue),
            ("number", args.number),
        )
        if v
    }
    status, body = request(args, "GET", "/calls" + (f"?{urlencode(query)}" if query else ""))
    lines = [f"{'ID':40} {'STATE':10} {'CALLER':16} {'QUEUE':12} {'AGENT':10} {'AGE':>7} MON"]
    for c in (body or {}).get("calls", []):
        lines.append(
            f"{c['id'][:40]:40} {c['state']:10} {c['caller'][:16]:16} "
            f"{(c['queue'] or '-')[:12]:12} {(c['agent'] or '-')[:10]:10} "
            f"{c['age_seconds']:>6.0f}s {c['monitors']}"
        )
    return _out(args, status, body, lines)


def cmd_agents(args: argparse.Namespace) -> int:
    status, body = request(args, "GET", "/agents")
    lines = [f"{'AGENT':12} {'STATE':14} {'TEAMS':20} CALL"]
    for a in (body or {}).get("agents", []):
        call = a.get("current_call") or {}
        lines.append(
            f"{a['id'][:12]:12} {str(a.get('state'))[:14]:14} "
            f"{','.join(a.get('teams', []))[:20]:20} {call.get('id', '-')}"
        )
    return _out(args, status, body, lines)


def cmd_queues(args: argparse.Namespace) -> int:
    status, body = request(args, "GET", "/queues")
    rows = (body or {}).get("queues", [])
    lines = [
        f"{'QUEUE':16} {'WAITING':>7} {'LONGEST':>8} {'AVAIL':>5} {'ANSWERED':>8} {'ABANDONED':>9}"
    ]
    for q in rows:
        lines.append(
            f"{str(q.get('queue', q.get('name', '')))[:16]:16} "
            f"{q.get('callers_waiting', q.get('waiting', 0)):>7} "
            f"{round(q.get('longest_wait_seconds') or 0):>7}s "
            f"{q.get('agents_available', 0):>5} {q.get('answered', 0):>8} "
            f"{q.get('abandoned', 0):>9}"
        )
    return _out(args, status, body, lines)


def cmd_transfer_targets(args: argparse.Namespace) -> int:
    status, body = request(args, "GET", "/transfer-targets")
    lines = [f"{q['queue']:16} {q['reason']}" for q in (body or {}).get("queues", [])]
    return _out(args, status, body, lines or ["(no queue can take a transfer now)"])


def cmd_monitor(args: argparse.Namespace) -> int:
    if args.action == "start":
        payload: dict[str, Any] = {"mode": args.mode}
        if args.target:
            payload["target"] = args.target
        if args.supervisor:
            payload["supervisor"] = args.supervisor
        status, body = request(args, "POST", f"/calls/{quote(args.id, safe='')}/monitor", payload)
    elif args.action == "mode":
        status, body = request(
            args, "PATCH", f"/monitors/{quote(args.id, safe='')}", {"mode": args.mode}
        )
    elif args.action == "stop":
        status, body = request(args, "DELETE", f"/monitors/{quote(args.id, safe='')}")
    else:
        status, body = request(args, "GET", "/monitors")
    line = None
    if isinstance(body, dict) and "id" in body:
        line = [f"monitor {body['id']} {body['state']} ({body['mode']}) on {body['call_id']}"]
    return _out(args, status, body, line)


def cmd_end_call(args: argparse.Namespace) -> int:
    path = f"/calls/{quote(args.id, safe='')}/end"
    status, body = request(args, "POST", path, {})
    if status != 202:
        return _out(args, status, body, None)
    call = body["call"]
    if not args.yes:
        answer = input(
            f"End call {call['id']} ({call['state']}, caller {call['caller']}, "
            f"agent {call['agent'] or '-'})? [y/N] "
        )
        if answer.strip().lower() not in ("y", "yes"):
            print("not ended")
            return 1
    status, body = request(args, "POST", path, {"confirm": body["confirm"]})
    return _out(args, status, body, [f"ended {call['id']}"])


def cmd_hash_secret(args: argparse.Namespace) -> int:
    from ..roles import hash_pin, hash_token, new_token, sip_ha1

    if args.kind == "token":
        token = new_token()
        print(
            json.dumps(
                {"token (give to the user, shown once)": token, "tokens entry": hash_token(token)},
                indent=2,
            )
        )
        return 0
    secret = os.environ.get("SWITCHHOOK_SECRET") or getpass.getpass(f"{args.kind}: ")
    if args.kind == "pin":
        if not secret.isdigit():
            print("a PIN is digits only", file=sys.stderr)
            return 2
        print(json.dumps({"pin": hash_pin(secret)}, indent=2))
    else:
        if not args.username:
            print("--username is required for --kind sip", file=sys.stderr)
            return 2
        print(json.dumps({"sip": sip_ha1(args.username, secret, args.realm)}, indent=2))
    return 0


def _guard(func: Any) -> Any:
    def run(args: argparse.Namespace) -> int:
        try:
            return int(func(args))
        except ClientError as exc:
            print(str(exc), file=sys.stderr)
            return 2

    return run


def add_commands(sub: Any, config_help: str) -> None:
    """Register the admin subcommands on ``switchhook``'s subparsers."""

    def common(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
        parser.add_argument("--config", help=config_help)
        parser.add_argument("--api", help="admin API host:port (default: admin.listen)")
        parser.add_argument("--token", help="API token (default: $SWITCHHOOK_TOKEN)")
        parser.add_argument("--json", action="store_true", help="raw JSON output")
        return parser

    calls = common(sub.add_parser("calls", help="live calls (queued, connected), or one call"))
    calls.add_argument("id", nargs="?", help="a call id: show its details")
    calls.add_argument("--state", choices=["queued", "connected", "ivr"])
    calls.add_argument("--agent")
    calls.add_argument("--queue")
    calls.add_argument("--number")
    calls.set_defaults(func=_guard(cmd_calls))

    agents = common(sub.add_parser("agents", help="agents, their states and current call"))
    agents.set_defaults(func=_guard(cmd_agents))

    queues = common(sub.add_parser("queues", help="queues: waiting callers, agents, counts"))
    queues.set_defaults(func=_guard(cmd_queues))

    targets = common(
        sub.add_parser("transfer-targets", help="queues an agent may transfer to now, and why")
    )
    targets.set_defaults(func=_guard(cmd_transfer_targets))

    monitor = sub.add_parser("monitor", help="monitor calls: start, mode, stop, list")
    actions = monitor.add_subparsers(dest="action", required=True)
    start = common(actions.add_parser("start", help="call my phone and attach it to a call"))
    start.add_argument("id", help="call id")
    start.add_argument("--mode", default="listen", choices=["listen", "coach", "barge"])
    start.add_argument("--target", help="SIP URI to call instead of my registered phone")
    start.add_argument("--supervisor", help="connect this user instead of me")
    mode = common(actions.add_parser("mode", help="change a monitor's mode"))
    mode.add_argument("id", help="monitor id")
    mode.add_argument("mode", choices=["listen", "coach", "barge"])
    stop = common(actions.add_parser("stop", help="stop a monitor"))
    stop.add_argument("id", help="monitor id")
    common(actions.add_parser("list", help="monitors in progress"))
    monitor.set_defaults(func=_guard(cmd_monitor))

    end = common(sub.add_parser("end-call", help="end a call (asks for confirmation)"))
    end.add_argument("id", help="call id")
    end.add_argument("--yes", action="store_true", help="confirm without asking")
    end.set_defaults(func=_guard(cmd_end_call))

    hashing = sub.add_parser("hash-secret", help="hash a secret for users: (token, pin, sip phone)")
    hashing.add_argument("--kind", choices=["token", "pin", "sip"], default="token")
    hashing.add_argument("--username", help="SIP username (--kind sip)")
    hashing.add_argument("--realm", default="switchhook", help="digest realm (--kind sip)")
    hashing.set_defaults(func=cmd_hash_secret)
