"""Executing deflections and transfers on live calls (the engine side of ``ivr.hours``).

The pure part (which option applies to a call reaching a closed queue) is
:func:`ivr.hours.resolve_deflection`; this module carries the chosen option out: another
queue (handed back to the queue node), an outside number (B2BUA bridge or REFER), a SIP
redirection carrying data headers (302 before answer, REFER after), voicemail
(:mod:`ivr.voicemail`) or a message then hang-up. It also runs the ``deflect`` and
``transfer`` flow tasks.

Contract for the queue engine (``ivr/queueing.py``): when the queue is closed, call
:func:`deflect_after_hours`; ``None`` means no deflection applies (the queue node goes to its
``closed`` target), otherwise return its :class:`TaskResult` as the queue task's result. For
the ``queue`` option that result is ``queue`` with ``data={"deflect_queue": name}``: enqueue
the caller to that queue instead, and do not deflect it again if that queue is closed too
(:func:`already_deflected` says so: deflection is one hop).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from sipstack import ua as sip
from sipstack.errors import LocalProtocolError

from .call import CallState, OriginateFailed
from .flows.actions import StartTask
from .flows.profile import FLAG_HEADERS, USER_TO_USER
from .hours import (
    MessageDeflection,
    NumberDeflection,
    QueueDeflection,
    SipDeflection,
    VoicemailDeflection,
    resolve_deflection,
)
from .hours.deflection import DeflectionOption, deflection_summary
from .messages import play_message
from .tasks import TaskHandler, TaskResult
from .voicemail import leave_voicemail

if TYPE_CHECKING:
    from .call import Call

__all__ = [
    "already_deflected",
    "deflect_after_hours",
    "execute_deflection",
    "redirect",
    "redirect_uri",
    "refer",
    "sip_data_values",
    "sipfrag_status",
    "transfer_to_number",
]

ORIGINATE_TIMEOUT_SECONDS = 30.0
ACK_TIMEOUT_SECONDS = 5.0
# After 202 Accepted: how long to wait for the NOTIFY saying how the transfer went
# (RFC 3515 §2.4.5) before hanging up anyway.
REFER_OUTCOME_TIMEOUT_SECONDS = 15.0
REFER_RESPONSE_TIMEOUT_SECONDS = 10.0


def already_deflected(call: Call) -> bool:
    """True once the call has been deflected (a second closed queue must not deflect it)."""
    return call.deflected


# --------------------------------------------------------------------------------------------
# Data headers (SIP redirection) and carried caller data


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _call_field(call: Call, name: str, task: StartTask | None) -> Any:
    fields: dict[str, Any] = {
        "call_id": call.call_id,
        "caller": call.caller_number,
        "caller_uri": call.caller,
        "called": call.called,
        "trunk": call.trunk,
        "menu_path": (task.menu_path if task is not None and task.menu_path else call.menu_path),
        "queue": call.queue,
        "language": task.language if task is not None else None,
    }
    if name in fields:
        return fields[name]
    # Anything else is read from the caller's INVITE: `source_field: X-Account-Id`.
    return call.request.headers.get(name)


def _profile_field(call: Call, name: str) -> Any:
    profile = call.profile
    if hasattr(profile, name) and name != "extra":
        return getattr(profile, name)
    return dict(profile.extra).get(name)


def sip_data_values(
    call: Call, option: SipDeflection, task: StartTask | None = None
) -> list[tuple[str, str]]:
    """The (header, value) pairs of a SIP redirection, in configured order. A dynamic
    parameter whose source has no value is left out (and logged)."""
    out: list[tuple[str, str]] = []
    variables = task.variables if task is not None else {}
    for item in option.data:
        if item.type == "static":
            assert item.value is not None
            out.append((item.field, item.value))
            continue
        assert item.source_field is not None
        if item.source == "profile":
            value = _profile_field(call, item.source_field)
        elif item.source == "variables":
            value = variables.get(item.source_field)
        else:
            value = _call_field(call, item.source_field, task)
        if value is None or value == "":
            call.log.warning(
                "redirection data missing",
                field=item.field,
                source=item.source,
                source_field=item.source_field,
            )
            continue
        out.append((item.field, _text(value)))
    return out


# RFC 3261 §25.1: hname/hvalue = *( hnv-unreserved / unreserved / escaped ), where
# hnv-unreserved = "[" / "]" / "/" / "?" / ":" / "+" / "$" and unreserved = alphanum / mark.
_HEADER_SAFE = "-_.!~*'()[]/?:+$"


def redirect_uri(uri: str, headers: Sequence[tuple[str, str]]) -> str:
    """``uri`` with ``headers`` as URI headers (RFC 3261 §19.1.1: ``?name=value&...``),
    escaped, for a 302 Contact or a Refer-To."""
    if not headers:
        return uri
    encoded = "&".join(
        f"{quote(name, safe=_HEADER_SAFE)}={quote(value, safe=_HEADER_SAFE)}"
        for name, value in headers
    )
    return f"{uri}{'&' if '?' in uri else '?'}{encoded}"


def carried_headers(call: Call) -> list[tuple[str, str]]:
    """The caller's reserved data to pass on an outbound leg: X-Reserved-* headers, the
    configured profile headers and User-to-User, as received."""
    wanted = {h.lower() for h in FLAG_HEADERS} | {USER_TO_USER.lower()}
    wanted |= {h.lower() for h in call.engine.settings.profile.headers}
    return [
        (name, value)
        for name, value in call.request.headers
        if name.lower() in wanted or name.lower().startswith("x-reserved-")
    ]


def _note_transfer(call: Call, entry: dict[str, Any]) -> None:
    """Keep the deflection/transfer in the call record (``transfers``)."""
    call.metrics["transfers"] = (*call.metrics.get("transfers", ()), entry)


# --------------------------------------------------------------------------------------------
# SIP actions


def _local_host(call: Call) -> str:
    engine = call.engine
    advertised = engine.settings.sip.public_address
    if advertised is not None:
        return str(advertised)
    if engine.listening:
        return engine.listening[0][1]
    return str(engine.settings.media_address)


async def refer(call: Call, refer_to: str) -> bool:
    """Transfer the (answered, or answered now) caller with REFER (RFC 3515) and hang up once
    the transfer target answered (NOTIFY with a 2xx sipfrag) or, without news, after a while.
    False when the REFER is refused or the NOTIFY reports a failure (the caller stays)."""
    if not await call.answer():
        return False
    try:
        await asyncio.wait_for(call.confirmed.wait(), ACK_TIMEOUT_SECONDS)
    except TimeoutError:
        call.log.warning("no ACK; cannot REFER")
        return False
    engine = call.engine
    loop = asyncio.get_running_loop()
    response: asyncio.Future[int] = loop.create_future()
    outcome: asyncio.Future[int] = loop.create_future()

    def on_dialog(event: sip.Event) -> bool:
        if isinstance(event, sip.InDialogResponseReceived) and event.method == "REFER":
            if not response.done():
                response.set_result(408 if event.response is None else event.response.status_code)
            return True
        if isinstance(event, sip.InDialogRequestReceived) and event.request.method == "NOTIFY":
            # RFC 3515 §2.4.4: the body is a message/sipfrag status line of the new call.
            progress = sipfrag_status(event.request.body)
            engine.ua.respond(event.transaction_id, 200, loop.time())
            call.log.info("REFER progress", status=progress)
            if progress is not None and progress >= 200 and not outcome.done():
                outcome.set_result(progress)
            return True
        return False

    call.on_dialog = on_dialog
    host = _local_host(call)
    assert engine.endpoint is not None
    try:
        try:
            engine.endpoint.run_command(
                lambda now: engine.ua.send_in_dialog(
                    call.leg_id,
                    "REFER",
                    now,
                    headers=[
                        ("Refer-To", f"<{refer_to}>"),
                        ("Referred-By", f"<sip:{call.called or 'switchhook'}@{host}>"),
                    ],
                )
            )
        except LocalProtocolError as exc:
            call.log.warning("REFER not sent", error=str(exc))
            return False
        call.log.info("REFER sent", refer_to=refer_to)
        try:
            status = await asyncio.wait_for(response, REFER_RESPONSE_TIMEOUT_SECONDS)
        except TimeoutError:
            status = 408
        if not 200 <= status < 300:
            call.log.warning("REFER refused", status=status)
            return False
        try:
            final = await asyncio.wait_for(outcome, REFER_OUTCOME_TIMEOUT_SECONDS)
        except TimeoutError:
            final = None
        if final is not None and final >= 300:
            call.log.warning("REFER target failed", status=final)
            return False
        call.log.info("transferred by REFER", refer_to=refer_to, notify_status=final)
    finally:
        call.on_dialog = None
    call.hangup("transferred")
    return True


def sipfrag_status(body: bytes) -> int | None:
    line = body.decode("utf-8", "replace").strip().splitlines()[:1]
    parts = line[0].split() if line else []
    if len(parts) >= 2 and parts[0].upper().startswith("SIP/") and parts[1].isdigit():
        return int(parts[1])
    return None


async def redirect(call: Call, uri: str, headers: Sequence[tuple[str, str]] = ()) -> TaskResult:
    """Send the caller to ``uri`` carrying ``headers``: 302 Moved Temporarily before answer,
    REFER after (RFC 3261 §21.3.3, RFC 3515)."""
    target = redirect_uri(uri, headers)
    engine = call.engine
    if call.state is CallState.SETTING_UP:
        assert engine.endpoint is not None
        engine.endpoint.run_command(
            lambda now: engine.ua.reject(
                call.leg_id,
                302,
                now,
                reason="Moved Temporarily",
                headers=[("Contact", f"<{target}>")],
            )
        )
        call.log.info("redirected", status=302, contact=target)
        call.hangup("redirected 302")
        return TaskResult("redirected")
    if call.state is CallState.ENDED:
        return TaskResult("failed")
    return TaskResult("transferred" if await refer(call, target) else "failed")


def _outbound_trunk(call: Call, name: str | None) -> Any:
    settings = call.engine.settings
    if name is not None:
        trunk = settings.trunk(name)
        return trunk if trunk is not None and trunk.outbound is not None else None
    return next((t for t in settings.trunks if t.outbound is not None), None)


async def transfer_to_number(
    call: Call, number: str, trunk_name: str | None, method: str = "bridge"
) -> TaskResult:
    """Send the caller to an outside ``number`` through an outbound trunk: REFER when
    ``method`` is refer or the trunk says ``refer: true``, else place the call (B2BUA: From
    = the trunk's caller id or the caller's number; the caller's reserved data carried as
    headers), answer the caller when the number answers, and bridge until either hangs up."""
    trunk = _outbound_trunk(call, trunk_name)
    if trunk is None:
        call.log.error("no outbound trunk", trunk=trunk_name)
        return TaskResult("failed", {"transfer_status": 0})
    route = trunk.outbound
    host = str(route.host)
    if method == "refer" or route.refer:
        ok = await refer(call, f"sip:{number}@{_uri_host(host)}:{route.port}")
        return TaskResult("transferred" if ok else "failed")
    engine = call.engine
    caller_id = route.caller_id or call.caller_number or "anonymous"
    credentials = None
    if route.username is not None and route.password is not None:
        credentials = (route.username, route.password.get_secret_value())
    call.ring()
    try:
        leg = await engine.originate(
            request_uri=f"sip:{number}@{_uri_host(host)}:{route.port}",
            to_uri=f"<sip:{number}@{_uri_host(host)}>",
            from_uri=f"<sip:{caller_id}@{_uri_host(_local_host(call))}>",
            destination=(host, route.port),
            transport=route.transport,
            credentials=credentials,
            headers=tuple(carried_headers(call)),
            timeout=ORIGINATE_TIMEOUT_SECONDS,
        )
    except OriginateFailed as exc:
        call.log.warning(
            "outside number not reached", number=number, status=exc.status_code, reason=exc.reason
        )
        return TaskResult("failed", {"transfer_status": exc.status_code})
    if not await call.answer():
        leg.hangup("caller gone")
        return TaskResult("failed")
    call.log.info(
        "bridging to outside number", number=number, trunk=trunk.name, outbound_call_id=leg.call_id
    )
    try:
        first = await engine.run_bridge(call, leg)
    finally:
        # A caller's BYE cancels this task (the call's behaviour ends) inside run_bridge,
        # before it hangs up the other side: do it here.
        leg.hangup("caller hung up")
    return TaskResult("bridged", {"hung_up_first": "caller" if first is call else "number"})


def _uri_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


# --------------------------------------------------------------------------------------------
# Executing an option


async def execute_deflection(
    call: Call,
    option: DeflectionOption,
    *,
    queue: str | None,
    task: StartTask | None = None,
    reason: str = "deflect",
) -> TaskResult:
    """Carry ``option`` out for ``call`` (coming from ``queue``)."""
    call.deflected = True
    language = task.language if task is not None else "en"
    call.log.info("deflecting", queue=queue, option=deflection_summary(option), reason=reason)
    entry: dict[str, Any] = {"kind": "deflection", "from_queue": queue, "reason": reason}
    match option:
        case QueueDeflection(queue=target):
            _note_transfer(call, {**entry, "to": "queue", "target": target})
            return TaskResult("queue", {"deflect_queue": target})
        case MessageDeflection(prompt=prompt):
            _note_transfer(call, {**entry, "to": "message"})
            if not await call.answer():
                return TaskResult("failed")
            await play_message(call, prompt, "closed", language)
            call.hangup("after-hours message played")
            return TaskResult("done")
        case NumberDeflection(number=number, trunk=trunk, method=method):
            _note_transfer(call, {**entry, "to": "number", "target": number, "trunk": trunk})
            return await transfer_to_number(call, number, trunk, method)
        case SipDeflection():
            values = sip_data_values(call, option, task)
            record: dict[str, Any] = {**entry, "to": "sip", "target": option.uri}
            if option.data_records.metadata:
                record["data"] = dict(values)
            _note_transfer(call, record)
            if option.data_records.crm:
                await _crm_data(call, option.uri, values, queue)
            return await redirect(call, option.uri, values)
        case VoicemailDeflection():
            _note_transfer(call, {**entry, "to": "voicemail"})
            return await leave_voicemail(call, queue, option, task=task)
    raise AssertionError(f"unknown deflection option {option!r}")


async def _crm_data(
    call: Call, uri: str, values: Sequence[tuple[str, str]], queue: str | None
) -> None:
    outbox = call.engine.outbox
    if outbox is None:
        call.log.warning("redirection data not sent to the CRM: no crm configured")
        return
    payload = {
        "type": "redirection",
        "call_id": call.call_id,
        "caller": call.caller_number,
        "called": call.called,
        "queue": queue,
        "target": uri,
        "data": dict(values),
        "at": call.engine.now().isoformat(),
    }
    from .store import StoreError

    try:
        await outbox.enqueue("redirection", payload)
    except StoreError as exc:
        call.log.error("redirection data not queued for the CRM", error=str(exc))


async def deflect_after_hours(
    call: Call, queue: str | None, task: StartTask | None = None
) -> TaskResult | None:
    """Deflect a call that reached closed ``queue``, as ``after_hours`` says. None when no
    deflection applies (or the call was deflected once already). ``task`` (the queue
    node's StartTask) gives the language, flow variables and menu path."""
    if already_deflected(call):
        call.log.info("not deflected again", queue=queue)
        return None
    option = resolve_deflection(call.engine.settings.after_hours, queue)
    if option is None:
        return None
    return await execute_deflection(call, option, queue=queue, task=task, reason="after hours")


# --------------------------------------------------------------------------------------------
# Flow tasks


async def deflect_task(call: Call, task: StartTask) -> TaskResult:
    """Deflect now (whatever the time) as the after-hours settings say for the node's queue,
    else with the global option. ``queue`` result: the flow continues at ``next`` with the
    variable ``deflect_queue`` set (route it to a queue node)."""
    queue = task.params.get("queue")
    config = call.engine.settings.after_hours
    option = resolve_deflection(config, queue)
    if option is None and config.option is not None:
        custom = config.queues.get(queue) if queue is not None else None
        if custom is None or custom.deflect:
            option = config.option.option
    if option is None:
        call.log.warning("no deflection configured", queue=queue)
        return TaskResult("failed")
    return await execute_deflection(call, option, queue=queue, task=task, reason="flow")


async def transfer_task(call: Call, task: StartTask) -> TaskResult:
    """Transfer to ``number`` through ``trunk`` (bridge or REFER) or to a SIP ``uri`` (302
    before answer, REFER after). ``failed`` when it could not be done."""
    params = task.params
    number, uri = params.get("number"), params.get("uri")
    entry: dict[str, Any] = {"kind": "transfer", "target": number or uri}
    _note_transfer(call, entry)
    if number:
        return await transfer_to_number(
            call, number, params.get("trunk"), params.get("method") or "bridge"
        )
    if uri:
        return await redirect(call, uri)
    return TaskResult("failed")


# The flow tasks this module provides (registered by the engine's composition).
TASKS: Mapping[str, TaskHandler] = {"deflect": deflect_task, "transfer": transfer_task}
