"""Admin API routes: live calls, agents, queues, monitors, ending calls, the audit trail.

Transport-free: :meth:`AdminApi.handle` takes a method, a target, headers and a body and
returns an :class:`ApiResponse` (``ivr.admin.server`` speaks HTTP). Every route but
``/openapi.json`` needs ``Authorization: Bearer <token>``; each checks its permission and, for
managers, that the call belongs to one of their teams. The OpenAPI document (:data:`OPENAPI`)
is written by hand next to the routes; a unit test checks that it covers every route.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

from media.bridge import TapMode

from ..monitoring import MonitorError, MonitorState
from ..roles import Permission, User

if TYPE_CHECKING:
    from ..monitoring import Supervision

__all__ = ["OPENAPI", "ROUTES", "AdminApi", "ApiResponse"]


@dataclass(frozen=True, slots=True)
class ApiResponse:
    status: int
    body: Any
    headers: tuple[tuple[str, str], ...] = ()


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str
    params: dict[str, str]
    query: dict[str, str]
    body: Any
    user: User


Handler = Callable[["AdminApi", Request], Awaitable[ApiResponse]]


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    template: str  # OpenAPI style: /calls/{id}
    handler: Handler
    regex: re.Pattern[str] = field(init=False, compare=False)

    def __post_init__(self) -> None:
        pattern = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", self.template)
        object.__setattr__(self, "regex", re.compile(f"^{pattern}$"))


ROUTES: list[Route] = []


def route(method: str, template: str) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        ROUTES.append(Route(method, template, handler))
        return handler

    return register


class AdminApi:
    def __init__(self, supervision: Supervision) -> None:
        self.sup = supervision

    async def handle(
        self, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> ApiResponse:
        parts = urlsplit(target)
        path = parts.path.rstrip("/") or "/"
        if method == "GET" and path == "/openapi.json":
            return ApiResponse(200, OPENAPI)
        matched = [(r, m) for r in ROUTES if (m := r.regex.match(path))]
        if not matched:
            return _error(404, f"no route {path}")
        chosen = next(((r, m) for r, m in matched if r.method == method), None)
        if chosen is None:
            allowed = ", ".join(sorted({r.method for r, _ in matched}))
            return ApiResponse(405, {"error": f"{method} not allowed"}, (("Allow", allowed),))
        user = self._authenticate(headers.get("authorization", ""))
        if user is None:
            return ApiResponse(
                401,
                {"error": "a valid bearer token is required"},
                (("WWW-Authenticate", 'Bearer realm="switchhook"'),),
            )
        try:
            payload = json.loads(body) if body.strip() else {}
        except (ValueError, UnicodeDecodeError):
            return _error(400, "the body is not JSON")
        if not isinstance(payload, dict):
            return _error(400, "the body must be a JSON object")
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        r, m = chosen
        request = Request(
            method, path, {k: unquote(v) for k, v in m.groupdict().items()}, query, payload, user
        )
        try:
            return await r.handler(self, request)
        except ApiError as exc:
            return _error(exc.status, exc.message)
        except MonitorError as exc:
            return _error(exc.status, exc.message)

    def _authenticate(self, authorization: str) -> User | None:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        return self.sup.directory.by_token(token.strip())

    # ---- helpers ----------------------------------------------------------------------------

    def _call(self, request: Request) -> Any:
        call = self.sup.find_call(request.params["id"])
        if call is None:
            raise ApiError(404, f"no call {request.params['id']}")
        if not self.sup.visible(request.user, call):
            raise ApiError(403, f"call {request.params['id']} is not yours to see")
        return call

    def _monitor(self, request: Request) -> Any:
        monitor = self.sup.monitors.get(request.params["id"])
        if monitor is None:
            raise ApiError(404, f"no monitor {request.params['id']}")
        return monitor


def _error(status: int, message: str) -> ApiResponse:
    return ApiResponse(status, {"error": message})


def _mode(value: Any) -> TapMode:
    try:
        return TapMode(value)
    except ValueError:
        raise ApiError(400, "mode must be listen, coach or barge") from None


def _need(user: User, permission: Permission) -> None:
    if not user.can(permission):
        raise ApiError(403, f"{user.name} lacks {permission.value}")


# ---- routes -----------------------------------------------------------------------------------


@route("GET", "/calls")
async def list_calls(api: AdminApi, request: Request) -> ApiResponse:
    _need(request.user, Permission.CALLS_VIEW)
    q = request.query
    out = []
    for call in api.sup.customer_calls():
        if not api.sup.visible(request.user, call):
            continue
        summary = api.sup.call_summary(call)
        if q.get("state") and summary["state"] != q["state"]:
            continue
        if q.get("agent") and call.agent != q["agent"]:
            continue
        if q.get("queue") and call.queue != q["queue"]:
            continue
        if q.get("number") and q["number"] not in (call.caller_number + " " + call.called):
            continue
        out.append(summary)
    return ApiResponse(200, {"calls": out})


@route("GET", "/calls/{id}")
async def call_details(api: AdminApi, request: Request) -> ApiResponse:
    _need(request.user, Permission.CALLS_VIEW)
    return ApiResponse(200, api.sup.call_details(api._call(request)))


@route("GET", "/agents")
async def list_agents(api: AdminApi, request: Request) -> ApiResponse:
    _need(request.user, Permission.CALLS_VIEW)
    user = request.user
    agents = [a for a in api.sup.agents_view() if user.covers(a["teams"])]
    return ApiResponse(200, {"agents": agents})


@route("GET", "/queues")
async def list_queues(api: AdminApi, request: Request) -> ApiResponse:
    _need(request.user, Permission.CALLS_VIEW)
    return ApiResponse(200, {"queues": api.sup.queues_view()})


@route("GET", "/transfer-targets")
async def transfer_targets(api: AdminApi, request: Request) -> ApiResponse:
    """Queues an agent may transfer to now (open; closed with deflection, logged-in agents
    or a 24/7 virtual agent when transfers outside hours are allowed)."""
    _need(request.user, Permission.CALLS_VIEW)
    runtime = getattr(api.sup.engine, "acd_runtime", None)
    targets = runtime.transfer_targets() if runtime is not None else []
    return ApiResponse(200, {"queues": targets})


@route("POST", "/calls/{id}/monitor")
async def start_monitor(api: AdminApi, request: Request) -> ApiResponse:
    call = api._call(request)
    body = request.body
    mode = _mode(body.get("mode", "listen"))
    supervisor = request.user
    name = body.get("supervisor")
    if name and name != request.user.name:
        other = api.sup.directory.users.get(str(name))
        if other is None:
            raise ApiError(404, f"no user {name}")
        # Sending someone else to listen needs the right oneself too.
        api.sup.require(request.user, Permission.MONITOR_LISTEN, call)
        supervisor = other
    target = body.get("target")
    if target is not None and not isinstance(target, str):
        raise ApiError(400, "target must be a SIP URI")
    monitor = api.sup.start_monitor(call, supervisor, mode, target)
    return ApiResponse(202, monitor.view(), (("Location", f"/monitors/{monitor.id}"),))


@route("GET", "/monitors")
async def list_monitors(api: AdminApi, request: Request) -> ApiResponse:
    _need(request.user, Permission.MONITOR_LISTEN)
    user = request.user
    return ApiResponse(
        200,
        {
            "monitors": [
                m.view()
                for m in api.sup.monitors.values()
                if m.supervisor is user or user.covers(api.sup.call_teams(m.call))
            ]
        },
    )


@route("GET", "/monitors/{id}")
async def get_monitor(api: AdminApi, request: Request) -> ApiResponse:
    _need(request.user, Permission.MONITOR_LISTEN)
    monitor = api._monitor(request)
    if monitor.supervisor is not request.user:
        api.sup.require(request.user, Permission.MONITOR_LISTEN, monitor.call)
    return ApiResponse(200, monitor.view())


@route("PATCH", "/monitors/{id}")
async def change_mode(api: AdminApi, request: Request) -> ApiResponse:
    monitor = api._monitor(request)
    mode = _mode(request.body.get("mode"))
    if monitor.supervisor is not request.user:
        api.sup.require(request.user, Permission.MONITOR_LISTEN, monitor.call)
    # The supervisor on the line must hold the mode's permission, and so must the requester.
    from ..roles import MODE_PERMISSION

    api.sup.require(monitor.supervisor, MODE_PERMISSION[mode.value], monitor.call)
    api.sup.set_mode(monitor, mode, request.user)
    return ApiResponse(200, monitor.view())


@route("DELETE", "/monitors/{id}")
async def stop_monitor(api: AdminApi, request: Request) -> ApiResponse:
    monitor = api._monitor(request)
    api.sup.stop_monitor(monitor, request.user)
    return ApiResponse(200, {**monitor.view(), "state": "stopping"})


@route("POST", "/calls/{id}/end")
async def end_call(api: AdminApi, request: Request) -> ApiResponse:
    call = api._call(request)
    token = request.body.get("confirm")
    if token is None:
        return ApiResponse(202, api.sup.request_end(call, request.user))
    if not isinstance(token, str):
        raise ApiError(400, "confirm must be the token of the first step")
    return ApiResponse(200, api.sup.confirm_end(call, request.user, token))


@route("GET", "/audit")
async def audit(api: AdminApi, request: Request) -> ApiResponse:
    user = request.user
    if user.role.scope != "all" or not user.can(Permission.CALLS_VIEW):
        raise ApiError(403, "the audit trail is for admins (scope all)")
    store = api.sup.engine.store
    if store is None:
        return ApiResponse(200, {"audit": []})
    since = request.query.get("since")
    entries = await store.audit.find(
        call_id=request.query.get("call_id"), since=float(since) if since else None
    )
    return ApiResponse(
        200,
        {
            "audit": [
                {
                    "id": e.id,
                    "who": e.who,
                    "at": e.at,
                    "action": e.action,
                    "call_id": e.call_id,
                    "details": dict(e.details),
                }
                for e in entries
            ]
        },
    )


# ---- OpenAPI 3 (hand-written; tests/unit/ivr/admin checks it covers ROUTES) -------------------

_ERROR = {
    "description": "error",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
}
_ID = [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}]


def _json(ref: str, description: str = "OK") -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}},
    }


def _ok(ref: str, description: str = "OK", **extra: Any) -> dict[str, Any]:
    return {"200": _json(ref, description), "401": _ERROR, "403": _ERROR, **extra}


OPENAPI: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {
        "title": "switchhook admin API",
        "version": "1",
        "description": "Live calls, agents and queues; monitoring (listen, coach, barge); "
        "ending calls. Bearer tokens per user (config `users[].tokens`, "
        "hashed); permissions from roles, managers scoped to their teams.",
    },
    "security": [{"bearer": []}],
    "paths": {
        "/calls": {
            "get": {
                "summary": "Calls queued and connected (and in the IVR), filtered",
                "parameters": [
                    {
                        "name": "state",
                        "in": "query",
                        "schema": {"type": "string", "enum": ["queued", "connected", "ivr"]},
                    },
                    {"name": "agent", "in": "query", "schema": {"type": "string"}},
                    {"name": "queue", "in": "query", "schema": {"type": "string"}},
                    {
                        "name": "number",
                        "in": "query",
                        "schema": {"type": "string"},
                        "description": "part of the caller's or the dialled number",
                    },
                ],
                "responses": _ok("CallList"),
            }
        },
        "/calls/{id}": {
            "get": {
                "summary": "Call details: metrics, transfers, participants (monitors with their "
                "mode), the menu path as the caller's issue, profile flags",
                "parameters": _ID,
                "responses": _ok("CallDetails", **{"404": _ERROR}),
            }
        },
        "/calls/{id}/monitor": {
            "post": {
                "summary": "Monitor a connected call: the engine calls the supervisor's phone "
                "(registered, configured, or `target`) and attaches it when answered",
                "parameters": _ID,
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "mode": {
                                        "type": "string",
                                        "enum": ["listen", "coach", "barge"],
                                    },
                                    "supervisor": {
                                        "type": "string",
                                        "description": "user to connect "
                                        "(default: the caller of the API)",
                                    },
                                    "target": {
                                        "type": "string",
                                        "description": "SIP URI to call instead",
                                    },
                                },
                            }
                        }
                    },
                },
                "responses": {
                    "202": _json("Monitor", "calling the supervisor"),
                    "400": _ERROR,
                    "401": _ERROR,
                    "403": _ERROR,
                    "404": _ERROR,
                    "409": _ERROR,
                },
            }
        },
        "/calls/{id}/end": {
            "post": {
                "summary": "End a queued or connected call, in two steps: without `confirm` the "
                "answer (202) carries a one-time token; send it back as `confirm` "
                "within its lifetime to end the call (200). Needs calls.end.",
                "parameters": _ID,
                "requestBody": {
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {"confirm": {"type": "string"}},
                            }
                        }
                    }
                },
                "responses": {
                    "200": _json("Ended", "ended"),
                    "202": _json("Confirmation", "confirm with this token"),
                    "401": _ERROR,
                    "403": _ERROR,
                    "404": _ERROR,
                    "409": _ERROR,
                },
            }
        },
        "/agents": {
            "get": {
                "summary": "Agents, their states and current call",
                "responses": _ok("AgentList"),
            }
        },
        "/queues": {
            "get": {
                "summary": "Queues and their waiting/connected calls",
                "responses": _ok("QueueList"),
            }
        },
        "/transfer-targets": {
            "get": {
                "summary": "Queues an agent may transfer to now, with the rule that lists each",
                "responses": _ok("QueueList"),
            }
        },
        "/monitors": {"get": {"summary": "Monitors in progress", "responses": _ok("MonitorList")}},
        "/monitors/{id}": {
            "get": {
                "summary": "One monitor",
                "parameters": _ID,
                "responses": _ok("Monitor", **{"404": _ERROR}),
            },
            "patch": {
                "summary": "Change the mode (listen, coach, barge)",
                "parameters": _ID,
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["mode"],
                                "properties": {
                                    "mode": {"type": "string", "enum": ["listen", "coach", "barge"]}
                                },
                            }
                        }
                    },
                },
                "responses": _ok("Monitor", **{"400": _ERROR, "404": _ERROR}),
            },
            "delete": {
                "summary": "Stop monitoring (hangs up the supervisor's leg)",
                "parameters": _ID,
                "responses": _ok("Monitor", **{"404": _ERROR}),
            },
        },
        "/audit": {
            "get": {
                "summary": "Audit trail (monitor start/mode/stop, call.end); admins",
                "parameters": [
                    {"name": "call_id", "in": "query", "schema": {"type": "string"}},
                    {"name": "since", "in": "query", "schema": {"type": "number"}},
                ],
                "responses": _ok("AuditList"),
            }
        },
        "/openapi.json": {
            "get": {
                "summary": "This document",
                "security": [],
                "responses": {"200": {"description": "OpenAPI 3"}},
            }
        },
    },
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": {
            "Error": {"type": "object", "properties": {"error": {"type": "string"}}},
            "CallSummary": {
                "type": "object",
                "properties": {
                    "id": {"type": "string"},
                    "state": {"type": "string"},
                    "caller": {"type": "string"},
                    "called": {"type": "string"},
                    "queue": {"type": "string", "nullable": True},
                    "agent": {"type": "string", "nullable": True},
                    "age_seconds": {"type": "number"},
                    "issue": {"type": "string", "nullable": True},
                    "monitors": {"type": "integer"},
                },
            },
            "CallList": {
                "type": "object",
                "properties": {
                    "calls": {
                        "type": "array",
                        "items": {"$ref": "#/components/schemas/CallSummary"},
                    }
                },
            },
            "CallDetails": {
                "allOf": [
                    {"$ref": "#/components/schemas/CallSummary"},
                    {
                        "type": "object",
                        "properties": {
                            "metrics": {"type": "object"},
                            "transfers": {"type": "array"},
                            "participants": {"type": "array", "items": {"type": "object"}},
                            "menu_path": {"type": "array", "items": {"type": "string"}},
                            "profile": {"type": "object"},
                            "teams": {"type": "array"},
                        },
                    },
                ]
            },
            "Monitor": {
                "type": "object",
                "properties": {
                    "id": {"type": "string"},
                    "call_id": {"type": "string"},
                    "supervisor": {"type": "string"},
                    "mode": {"type": "string"},
                    "state": {
                        "type": "string",
                        "enum": [state.value for state in MonitorState],
                    },
                    "via": {"type": "string"},
                    "target": {"type": "string"},
                },
            },
            "MonitorList": {
                "type": "object",
                "properties": {
                    "monitors": {"type": "array", "items": {"$ref": "#/components/schemas/Monitor"}}
                },
            },
            "Confirmation": {
                "type": "object",
                "properties": {
                    "confirm": {"type": "string"},
                    "expires_in": {"type": "number"},
                    "call": {"$ref": "#/components/schemas/CallSummary"},
                },
            },
            "Ended": {
                "type": "object",
                "properties": {
                    "id": {"type": "string"},
                    "ended": {"type": "boolean"},
                    "reason": {"type": "string"},
                },
            },
            "AgentList": {"type": "object", "properties": {"agents": {"type": "array"}}},
            "QueueList": {"type": "object", "properties": {"queues": {"type": "array"}}},
            "AuditList": {"type": "object", "properties": {"audit": {"type": "array"}}},
        },
    },
}
