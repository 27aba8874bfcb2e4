"""The engine: wires the SIP endpoint, trunk admission, the media plane and call behaviour.

One :class:`Engine` per process. SIP events arrive synchronously from
:class:`sipstack.aio.endpoint.SipEndpoint`; each admitted call gets a :class:`Call` whose
behaviour runs as an asyncio task (media itself is driven by the one shared media clock).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
import ssl
import time
from collections.abc import Callable, Coroutine
from datetime import datetime
from pathlib import Path
from typing import Any

import structlog

from media.aio.bridge import Bridge, open_bridge
from media.aio.clock import MediaClock
from media.aio.rtp import PortAllocator
from media.errors import MediaError, PortsExhausted
from media.prompts import Prompt, PromptCache
from sipstack import sdp
from sipstack import ua as sip
from sipstack.aio.endpoint import SipEndpoint
from sipstack.message import Limits, Request
from sipstack.timers import TimerSettings
from sipstack.transaction import Flow

from . import business_hours, deflection, queueing, voicemail
from .admin.server import AdminServer
from .admission import Admitted, Challenge, Forbidden, TrunkAdmission
from .call import Behaviour, Call, CallEvent, CallState, MediaLeg, OriginateFailed, OutboundLeg
from .config import Listener, Settings
from .crm import HttpCrmClient
from .events import CallAnswered, CallEnded, CallStarted, EventPublisher, make_event_publisher
from .flows import FlowSet
from .flows.interpreter import CallContext, FlowSession
from .flows.model import TtsItem
from .flows.profile import CallerProfile, parse_profile
from .hours import Clock, SystemClock
from .logs import call_log_context
from .monitoring import Supervision
from .outbox import Outbox
from .queueing import AcdRuntime
from .runtime import FlowRuntime
from .store import CallRecord, Store, StoreError
from .tasks import TaskRegistry
from .yamlloc import ConfigError

log = structlog.get_logger("switchhook.engine")

# How long shutdown waits for background work (``Engine.spawn``) before closing the store.
BACKGROUND_GRACE_SECONDS = 5.0


class Engine:
    def __init__(
        self,
        settings: Settings,
        *,
        flows: FlowSet | None = None,
        behaviour: Behaviour | None = None,
        rng: random.Random | None = None,
        config_path: Path | None = None,
        wall_clock: Clock | None = None,
    ) -> None:
        self.settings = settings
        # Wall-clock time for business hours; injectable (tests, `run --clock`).
        self.wall_clock: Clock = wall_clock or SystemClock()
        self.flows = flows
        self.config_path = config_path
        self.rng = rng or random.Random(secrets.randbits(64))
        if behaviour is None and flows is None:
            raise ValueError("an Engine needs flows or a behaviour")
        self.behaviour = behaviour or flow_behaviour
        self._watch_task: asyncio.Task[None] | None = None
        self.store: Store | None = None
        self.events: EventPublisher = make_event_publisher(None, node=settings.node)
        self.outbox: Outbox | None = None
        self._crm_client: HttpCrmClient | None = None
        self._outbox_task: asyncio.Task[None] | None = None
        self._watched: dict[Path, float] = {}
        sip_settings = settings.sip
        timers = TimerSettings(
            sip_settings.timers.t1_ms / 1000,
            sip_settings.timers.t2_ms / 1000,
            sip_settings.timers.t4_ms / 1000,
        )
        limits = Limits(
            sip_settings.limits.max_message_bytes,
            sip_settings.limits.max_headers,
            sip_settings.limits.max_line_bytes,
        )
        self.limits = limits
        advertised = sip_settings.public_address
        self.ua = sip.UserAgent(
            rng=self.rng,
            timers=timers,
            limits=limits,
            settings=sip.UaSettings(
                user_agent=sip_settings.user_agent,
                advertised_host=str(advertised) if advertised else None,
            ),
        )
        self.admission = TrunkAdmission(settings.trunks, secret=secrets.token_bytes(32))
        self.prompts = PromptCache(settings.media.tts.cache_dir)
        self.calls: dict[int, Call] = {}
        self.outbound: dict[int, OutboundLeg] = {}
        self.accepting = True
        self.endpoint: SipEndpoint | None = None
        self.clock: MediaClock | None = None
        self.ports: PortAllocator | None = None
        self.listening: list[tuple[str, str, int]] = []
        self.stats = {"calls_total": 0, "calls_rejected": 0, "calls_answered": 0}
        # Hooks for features that take SIP requests before trunk admission (supervisors'
        # phones: REGISTER, feature-code INVITEs). A request hook returns True when it has
        # responded. An INVITE hook returns None (not mine), True (responded: challenged or
        # refused) or the behaviour to run the admitted call with.
        self.request_hooks: list[Callable[[sip.RequestReceived], bool]] = []
        self.invite_hooks: list[Callable[[sip.InviteReceived], Behaviour | bool | None]] = []
        self._background: set[asyncio.Task[Any]] = set()
        self.admin_server: Any = None  # ivr.admin.server.AdminServer when admin is enabled
        self.supervision: Any = None  # ivr.monitoring.Supervision once started
        # The flow tasks of every feature (the flow runtime looks kinds up here).
        self.tasks = TaskRegistry()
        for feature in (business_hours, deflection, voicemail, queueing):
            self.tasks.register_all(feature.TASKS)
        self.acd_runtime: Any = None  # ivr.queueing.AcdRuntime once started

    # ---- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        settings = self.settings
        # The store first: if the database cannot be opened, say so and do not start.
        self.store = Store.from_settings(settings.store)
        await self.store.start()
        self.events = make_event_publisher(settings.mqtt, node=settings.node)
        await self.events.start()
        if settings.crm is not None:
            self._crm_client = HttpCrmClient(settings.crm, node=settings.node)
            self.outbox = Outbox(self.store, self._crm_client, settings.outbox, rng=self.rng)
            self._outbox_task = loop.create_task(self.outbox.run())
        self.endpoint = SipEndpoint(self.ua, self._on_sip_event, loop=loop, limits=self.limits)
        media = self.settings.media
        self.clock = MediaClock(loop)
        # Config names the highest RTP port; the allocator's bound includes its RTCP port.
        self.ports = PortAllocator(
            str(self.settings.media_address), media.rtp_port_min, media.rtp_port_max + 1
        )
        for listener in self.settings.sip.listen:
            host, port = str(listener.host), listener.port
            if listener.transport == "udp":
                local = await self.endpoint.listen_udp(host, port)
            elif listener.transport == "tcp":
                local = await self.endpoint.listen_tcp(host, port)
            else:
                local = await self.endpoint.listen_tls(host, port, _server_tls_context(listener))
            self.listening.append((listener.transport, local[0], local[1]))
            log.info("listening", transport=listener.transport, host=local[0], port=local[1])
        await self._prewarm()
        if self.config_path is not None and self.settings.flows.watch:
            self._watch_task = asyncio.get_running_loop().create_task(self._watch())
        self.supervision = await Supervision.start(self)
        admin = settings.admin
        if admin.enabled:
            # The admin HTTP API is given the features it serves (it imports no engine).
            host, _, port = admin.listen.rpartition(":")
            self.admin_server = await AdminServer.start(
                self.supervision, host.strip("[]"), int(port)
            )
        self.acd_runtime = await AcdRuntime.start(self)

    async def _prewarm(self) -> None:
        """Render every fixed TTS text of the flows once before the first call needs it."""
        if self.flows is None:
            return
        texts = sorted(static_tts_texts(self.flows))
        for text, language, voice, rate in texts:
            try:
                await self.tts(text, voice=voice, rate=rate, language=language)
            except MediaError as exc:
                log.error("TTS prompt could not be rendered", text=text, error=str(exc))
        log.info("prompts ready", tts_texts=len(texts))

    # ---- hot reload -------------------------------------------------------------------------

    def reload(self) -> bool:
        """Reload config + flows; swap the flows in atomically if they are valid. Calls in
        progress keep the flow set they started with. Returns whether it was swapped in."""
        from .loading import load_all

        if self.config_path is None:
            return False
        try:
            loaded = load_all(self.config_path)
        except ConfigError as exc:
            log.error(
                "reload rejected; the running flows stay",
                problems=len(exc.problems),
                errors=[str(p) for p in exc.problems],
            )
            return False
        changed = [
            name
            for name in type(loaded.settings).model_fields
            if name not in ("flows", "routes", "profile")
            and getattr(loaded.settings, name) != getattr(self.settings, name)
        ]
        if changed:
            log.warning("config sections changed that need a restart to apply", sections=changed)
        self.flows = loaded.flows
        self._watched = self._watch_snapshot()
        log.info("flows reloaded", flows=sorted(loaded.flows.flows))
        return True

    def _watch_snapshot(self) -> dict[Path, float]:
        paths: list[Path] = []
        if self.config_path is not None:
            paths.append(self.config_path)
        flows_dir = self.settings.flows.dir
        if flows_dir.is_dir():
            paths.extend(sorted(flows_dir.glob("*.yaml")))
        out: dict[Path, float] = {}
        for path in paths:
            try:
                out[path] = path.stat().st_mtime_ns
            except OSError:
                continue
        return out

    async def _watch(self) -> None:
        """Poll the config and flow files (no inotify dependency); reload on change."""
        self._watched = self._watch_snapshot()
        interval = self.settings.flows.watch_interval_seconds
        while True:
            await asyncio.sleep(interval)
            current = self._watch_snapshot()
            if current != self._watched:
                self._watched = current
                log.info("flow or config files changed; reloading")
                self.reload()

    def _tts_sync(self, text: str, voice: str | None = None, rate: int | None = None) -> Prompt:
        tts = self.settings.media.tts
        return self.prompts.tts(text, voice=voice or tts.voice, rate=rate or tts.rate)

    async def tts(
        self,
        text: str,
        *,
        voice: str | None = None,
        rate: int | None = None,
        language: str | None = None,
    ) -> Prompt:
        """Render ``text`` once (cached). Voice: the explicit one, else the one configured
        for ``language`` (``media.tts.voices``), else the default voice, else the language
        code itself (an espeak-ng voice name such as ``fr``)."""
        tts = self.settings.media.tts
        if voice is None and language is not None:
            voice = tts.voices.get(language) or tts.voice or language
        # Hot path (every call's prompts): an already rendered prompt needs no thread hop.
        cached = self.prompts.cached_tts(text, voice=voice or tts.voice, rate=rate or tts.rate)
        if cached is not None:
            return cached
        return await asyncio.get_running_loop().run_in_executor(
            None, self._tts_sync, text, voice, rate
        )

    async def shutdown(self) -> None:
        """Stop admitting calls; drain or hang up active ones within the grace period."""
        self.accepting = False
        if self._watch_task is not None:
            self._watch_task.cancel()
        if self.admin_server is not None:
            await self.admin_server.close()
        if self.supervision is not None:
            await self.supervision.close()
        if self.acd_runtime is not None:
            await self.acd_runtime.close()
        cfg = self.settings.shutdown
        log.info(
            "shutting down",
            active_calls=len(self.calls),
            mode=cfg.mode,
            grace_seconds=cfg.grace_seconds,
        )
        if cfg.mode == "drain" and self.calls:
            waiters = [c.ended.wait() for c in self.calls.values()]
            try:
                await asyncio.wait_for(asyncio.gather(*waiters), cfg.grace_seconds)
            except TimeoutError:
                log.info("grace period over; hanging up", remaining=len(self.calls))
        for call in list(self.calls.values()):
            self.hangup(call, "shutdown")
        # Give BYEs a moment to be answered (bounded: Timer F would otherwise take 32 s).
        deadline = asyncio.get_running_loop().time() + 2.0
        while self.ua.leg_count and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        if self.endpoint is not None:
            await self.endpoint.close()
        if self._background:
            # Work that outlives its call (a voicemail saved after the caller hung up) ends
            # before the store it writes to closes (bounded).
            await asyncio.wait(set(self._background), timeout=BACKGROUND_GRACE_SECONDS)
        if self.outbox is not None and self._outbox_task is not None:
            self.outbox.stop()
            with contextlib.suppress(asyncio.CancelledError, asyncio.TimeoutError):
                await asyncio.wait_for(self._outbox_task, 5)
        if self._crm_client is not None:
            self._crm_client.close()
        await self.events.stop()
        if self.store is not None:
            await self.store.close()
        log.info("stopped")

    # ---- SIP events -------------------------------------------------------------------------

    def now(self) -> datetime:
        """Wall-clock time (aware) for business hours and records."""
        return self.wall_clock.now()

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    def _on_sip_event(self, event: sip.Event) -> None:
        leg_id = getattr(event, "leg_id", None)
        call = self.leg(leg_id) if leg_id is not None else None
        if call is None:
            self._dispatch(event)
            return
        # Every log line about a call, media ones included, carries its call id.
        with call_log_context(call.call_id):
            self._dispatch(event)

    def _dispatch(self, event: sip.Event) -> None:
        if isinstance(event, sip.InviteReceived):
            self._on_invite(event)
        elif isinstance(event, sip.RequestReceived):
            self._on_request(event)
        elif isinstance(event, sip.CallEstablished):
            outbound = self.outbound.get(event.leg_id)
            if outbound is not None:
                self._outbound_answered(outbound, event)
            elif (call := self.calls.get(event.leg_id)) is not None:
                call.log.info("call confirmed (ACK)")
                call.confirmed.set()
        elif isinstance(event, sip.CallFailed):
            self._outbound_failed(event)
        elif isinstance(event, sip.ProgressReceived):
            if (outbound := self.outbound.get(event.leg_id)) is not None:
                outbound.log.info("outbound progress", status=event.response.status_code)
        elif isinstance(event, sip.InviteCancelled):
            self._ended(event.leg_id, "cancelled")
        elif isinstance(event, sip.CallTerminated):
            self._ended(event.leg_id, f"{event.ended_by.value}: {event.reason}")
        elif isinstance(event, sip.ReinviteReceived):
            self._on_reinvite(event)
        elif isinstance(event, sip.InDialogRequestReceived):
            self._on_in_dialog(event)
        elif isinstance(event, sip.InDialogResponseReceived):
            if (leg := self.leg(event.leg_id)) is not None and leg.on_dialog is not None:
                leg.on_dialog(event)
        elif isinstance(event, sip.MessageRejected):
            log.warning(
                "malformed SIP message",
                remote=event.flow.remote,
                transport=event.flow.transport,
                error=event.error,
                status=event.status_code,
                answered=event.answered,
            )

    def _on_request(self, event: sip.RequestReceived) -> None:
        request = event.request
        now = self._now()
        if any(hook(event) for hook in self.request_hooks):
            return
        if request.method == "OPTIONS":
            # §11.2: capabilities. Answered to anyone: carriers ping before they route.
            self.ua.respond(event.transaction_id, 200, now, headers=self.ua.options_headers())
        else:
            self.ua.respond(event.transaction_id, 501 if request.method != "REGISTER" else 403, now)

    def _on_invite(self, event: sip.InviteReceived) -> None:
        request, now = event.request, self._now()
        call_id = request.call_id
        bound = log.bind(
            call_id=call_id,
            source=f"{event.flow.remote[0]}:{event.flow.remote[1]}",
            transport=event.flow.transport,
        )
        self.stats["calls_total"] += 1
        if not self.accepting:
            self.ua.reject(event.leg_id, 503, now, headers=[("Retry-After", "30")])
            bound.info("call rejected: shutting down")
            return
        hooked = next((r for hook in self.invite_hooks if (r := hook(event))), None)
        if hooked is True:
            return
        decision = (
            Admitted(trunk="")
            if hooked is not None
            else self.admission.admit(request, event.flow.remote[0], now)
        )
        if isinstance(decision, Challenge):
            self.ua.reject(
                event.leg_id,
                401,
                now,
                headers=[("WWW-Authenticate", v) for v in decision.www_authenticate],
            )
            bound.info("call challenged", trunk=decision.trunk, reason=decision.reason)
            return
        if isinstance(decision, Forbidden):
            self.stats["calls_rejected"] += 1
            self.ua.reject(event.leg_id, 403, now)
            bound.warning("call refused", reason=decision.reason)
            return
        assert isinstance(decision, Admitted)
        max_calls = self.settings.sip.max_calls
        if max_calls and len(self.calls) >= max_calls:
            self.stats["calls_rejected"] += 1
            self.ua.reject(event.leg_id, 503, now, headers=[("Retry-After", "5")])
            bound.warning("call rejected: max_calls reached", max_calls=max_calls)
            return
        call = Call(
            engine=self,
            leg_id=event.leg_id,
            call_id=call_id,
            caller=str(request.from_.uri),
            caller_number=request.from_.uri.user or "",
            called=request.request_uri.user or "",
            trunk=decision.trunk,
            request=request,
            flow=event.flow,
            started_at=now,
            session_id=self.rng.randrange(1, 2**31),
            flows=self.flows,
        )
        self.calls[event.leg_id] = call
        bound.info("call admitted", trunk=decision.trunk, caller=call.caller, called=call.called)
        self.events.publish(
            CallStarted(
                call_id=call_id, caller=call.caller_number, called=call.called, trunk=decision.trunk
            )
        )
        call.task = asyncio.get_running_loop().create_task(
            self._run_call(call, hooked if callable(hooked) else None)
        )

    async def _run_call(self, call: Call, behaviour: Behaviour | None = None) -> None:
        structlog.contextvars.bind_contextvars(call_id=call.call_id)
        try:
            await (behaviour or self.behaviour)(call)
        except asyncio.CancelledError:
            raise
        except Exception:
            call.log.exception("call behaviour failed")
        finally:
            if call.state is not CallState.ENDED:
                self.hangup(call, "behaviour finished")

    def ring(self, call: Call) -> None:
        """Send 180 Ringing (once; the call must not be answered yet)."""
        assert self.endpoint is not None
        if call.state is CallState.SETTING_UP and not call.ringing:
            call.ringing = True
            self.endpoint.run_command(lambda now: self.ua.ring(call.leg_id, now))

    def reject(self, call: Call, status: int, reason: str | None = None) -> None:
        """Refuse a call that is not answered yet with a final status (e.g. 486, 603, 404)."""
        if call.state is CallState.SETTING_UP:
            self._reject(call, status, reason)
        else:
            self.hangup(call, reason or f"rejected {status}")

    async def answer(self, call: Call) -> bool:
        """Negotiate the caller's offer, open RTP and send 200 OK. False if the call could
        not be answered (it has then been rejected with the right status)."""
        if call.state is CallState.ANSWERED:
            return True
        if call.state is CallState.ENDED:
            return False
        return await self._answer(call, call.request.body)

    async def _answer(self, call: Call, offer_body: bytes) -> bool:
        assert self.ports is not None and self.clock is not None and self.endpoint is not None
        media = self.settings.media
        try:
            offer = sdp.SessionDescription.parse(offer_body) if offer_body else None
        except sdp.SdpError as exc:
            call.log.warning("bad SDP offer", error=str(exc))
            self._reject(call, 400, "Bad SDP")
            return False
        if offer is None:
            # Offer in the ACK (RFC 3264 §4, late offer) is not supported yet.
            self._reject(call, 488, "SDP Offer Required")
            return False
        try:
            rtp = await self.ports.open_endpoint(
                asyncio.get_running_loop(),
                self.clock,
                self.rng,
                on_dtmf=lambda digit: self._dtmf(call, digit),
            )
        except PortsExhausted:
            call.log.error("no RTP port available")
            self._reject(call, 503, "No Media Ports")
            return False
        if call.state is CallState.ENDED:  # cancelled while the socket opened
            rtp.close()
            return False
        call.rtp = rtp
        try:
            result = sdp.negotiate(
                offer,
                local_address=str(self.settings.media_address),
                local_port=rtp.local_port,
                supported=media.codecs,
                session_id=call.session_id,
                session_version=call.session_version,
            )
        except sdp.NoCommonCodec:
            call.log.info("no common codec")
            self._reject(call, 488, None)
            return False
        except sdp.SdpError as exc:
            call.log.warning("unusable SDP offer", error=str(exc))
            self._reject(call, 488, None)
            return False
        call.negotiated = result
        rtp.set_remote(
            (result.remote_address, result.remote_port),
            result.codec,
            result.payload_type,
            result.dtmf_payload_type,
        )
        self.endpoint.run_command(
            lambda now: self.ua.answer(call.leg_id, bytes(result.answer), now)
        )
        call.move(CallEvent.ANSWERED)
        call.answered_at = self._now()
        self.stats["calls_answered"] += 1
        self.events.publish(CallAnswered(call_id=call.call_id))
        call.log.info(
            "call answered",
            codec=result.codec,
            rtp_local=rtp.local_port,
            rtp_remote=f"{result.remote_address}:{result.remote_port}",
            dtmf_pt=result.dtmf_payload_type,
        )
        return True

    def _reject(self, call: Call, status: int, reason: str | None) -> None:
        assert self.endpoint is not None
        if self.ua.leg(call.leg_id) is not None:
            self.endpoint.run_command(
                lambda now: self.ua.reject(call.leg_id, status, now, reason=reason)
            )
        self._ended(call.leg_id, f"rejected {status}")

    def _dtmf(self, call: MediaLeg, digit: str) -> None:
        call.log.info("dtmf received", digit=digit)
        call.digits.put_nowait(digit)

    def _on_reinvite(self, event: sip.ReinviteReceived) -> None:
        call = self.leg(event.leg_id)
        now = self._now()
        if call is None or call.rtp is None:
            self.ua.respond(event.transaction_id, 481, now)
            return
        body = event.request.body
        if not body:
            # Session refresh without SDP: answer with our current session unchanged.
            answer = call.negotiated.answer if call.negotiated else None
            self.ua.respond(
                event.transaction_id,
                200,
                now,
                body=bytes(answer) if answer else b"",
                content_type="application/sdp" if answer else None,
            )
            return
        try:
            offer = sdp.SessionDescription.parse(body)
            call.session_version += 1
            result = sdp.negotiate(
                offer,
                local_address=str(self.settings.media_address),
                local_port=call.rtp.local_port,
                supported=self.settings.media.codecs,
                session_id=call.session_id,
                session_version=call.session_version,
            )
        except sdp.NoCommonCodec:
            self.ua.respond(event.transaction_id, 488, now)
            return
        except sdp.SdpError:
            self.ua.respond(event.transaction_id, 400, now, reason="Bad SDP")
            return
        call.negotiated = result
        call.rtp.set_remote(
            (result.remote_address, result.remote_port),
            result.codec,
            result.payload_type,
            result.dtmf_payload_type,
        )
        call.rtp.sending = result.local_direction.sends and not result.on_hold
        call.log.info("re-INVITE", on_hold=result.on_hold, direction=str(result.local_direction))
        self.ua.respond(
            event.transaction_id,
            200,
            now,
            body=bytes(result.answer),
            content_type="application/sdp",
        )
        if call.on_reinvite is not None:
            call.on_reinvite(call)

    def _on_in_dialog(self, event: sip.InDialogRequestReceived) -> None:
        call = self.leg(event.leg_id)
        request, now = event.request, self._now()
        if call is not None and call.on_dialog is not None and call.on_dialog(event):
            return
        if request.method == "INFO" and call is not None:
            digit = _info_digit(request)
            if digit is not None:
                self._dtmf(call, digit)
            self.ua.respond(event.transaction_id, 200, now)
            return
        self.ua.respond(event.transaction_id, 501, now)

    # ---- outbound legs (B2BUA) --------------------------------------------------------------

    async def originate(
        self,
        *,
        request_uri: str,
        to_uri: str,
        from_uri: str,
        destination: tuple[str, int],
        transport: str = "udp",
        credentials: tuple[str, str] | None = None,
        headers: tuple[tuple[str, str], ...] = (),
        timeout: float = 60.0,
        call_id: str | None = None,
        flow: Flow | None = None,
    ) -> OutboundLeg:
        """Place a call with an SDP offer and wait until it is answered.

        Raises :class:`OriginateFailed` with the final status (408 on ``timeout``, after
        CANCEL). The returned leg has its RTP endpoint set to the answer's address. ``flow``
        (e.g. a registered agent's binding: its transport, address and connection) overrides
        ``transport``/``destination``."""
        assert self.ports is not None and self.clock is not None and self.endpoint is not None
        media = self.settings.media
        try:
            rtp = await self.ports.open_endpoint(asyncio.get_running_loop(), self.clock, self.rng)
        except PortsExhausted:
            raise OriginateFailed(503, "no media port") from None
        session_id = self.rng.randrange(1, 2**31)
        offer = sdp.build_offer(
            str(self.settings.media_address),
            rtp.local_port,
            codecs=media.codecs,
            dtmf_payload_type=media.dtmf_payload_type,
            session_id=session_id,
            session_version=1,
        )
        if flow is None:
            flow = self._outbound_flow(transport, destination)
        leg_id = self.endpoint.run_command(
            lambda now: self.ua.invite(
                request_uri=request_uri,
                from_uri=from_uri,
                to_uri=to_uri,
                flow=flow,
                now=now,
                body=bytes(offer),
                headers=headers,
                call_id=call_id,
                credentials=credentials,
            )
        )
        assert isinstance(leg_id, int)
        invite = self.ua.leg(leg_id)
        leg = OutboundLeg(
            engine=self,
            leg_id=leg_id,
            call_id=invite.invite.call_id if invite else "",
            flow=flow,
            started_at=self._now(),
            rtp=rtp,
            session_id=session_id,
            target=request_uri,
            offer=offer,
        )
        rtp.on_dtmf = lambda digit: self._dtmf(leg, digit)
        self.outbound[leg_id] = leg
        leg.log.info(
            "outbound call",
            target=request_uri,
            destination=f"{destination[0]}:{destination[1]}",
            transport=transport,
        )
        try:
            await asyncio.wait_for(asyncio.shield(leg.answered), timeout)
        except TimeoutError:
            self.hangup(leg, "no answer")
            raise OriginateFailed(408, "no answer") from None
        return leg

    def _outbound_flow(self, transport: str, destination: tuple[str, int]) -> Flow:
        name = transport.upper()
        local = next(((h, p) for t, h, p in self.listening if t.upper() == name), None)
        return Flow(name, destination, None, local)

    def _outbound_answered(self, leg: OutboundLeg, event: sip.CallEstablished) -> None:
        response = event.response
        try:
            answer = sdp.SessionDescription.parse(response.body if response else b"")
            result = sdp.process_answer(leg.offer, answer)
        except sdp.SdpError as exc:
            leg.log.warning("unusable SDP answer; hanging up", error=str(exc))
            self.hangup(leg, "bad SDP answer")
            return
        leg.negotiated = result
        assert leg.rtp is not None
        leg.rtp.set_remote(
            (result.remote_address, result.remote_port),
            result.codec,
            result.payload_type,
            result.dtmf_payload_type,
        )
        leg.move(CallEvent.ANSWERED)
        leg.log.info("outbound answered", codec=result.codec)
        if not leg.answered.done():
            leg.answered.set_result(None)

    def _outbound_failed(self, event: sip.CallFailed) -> None:
        leg = self.outbound.get(event.leg_id)
        if leg is None:
            return
        if not leg.answered.done():
            leg.answered.set_exception(OriginateFailed(event.status_code, event.reason))
        self._ended(event.leg_id, f"failed {event.status_code} {event.reason}")

    # ---- bridging ---------------------------------------------------------------------------

    def bridge(self, caller: MediaLeg, other: MediaLeg) -> Bridge:
        """Bridge two answered legs' media (pass-through, transcoding when codecs differ).
        Playback on both legs stops; the bridge stops by itself when either leg ends (see
        :meth:`run_bridge`)."""
        assert caller.rtp is not None and other.rtp is not None
        caller.rtp.stop_playback()
        other.rtp.stop_playback()
        bridge = open_bridge(caller.rtp, other.rtp)
        caller.bridge = other.bridge = bridge
        caller.log.info("bridged", other_leg=other.leg_id, other_call_id=other.call_id)
        return bridge

    async def run_bridge(
        self, caller: MediaLeg, other: MediaLeg, *, reason: str = "other party hung up"
    ) -> MediaLeg:
        """Bridge, wait until either leg ends, hang up the other, stop the bridge. Returns
        the leg that ended first."""
        bridge = self.bridge(caller, other)
        a = asyncio.ensure_future(caller.ended.wait())
        b = asyncio.ensure_future(other.ended.wait())
        first: MediaLeg = caller
        try:
            done, _ = await asyncio.wait({a, b}, return_when=asyncio.FIRST_COMPLETED)
            first = caller if a in done else other
        finally:
            a.cancel()
            b.cancel()
            bridge.stop()
            caller.bridge = other.bridge = None
            # Also when this task is cancelled (the caller's BYE cancels the call's task
            # before the wait returns): no leg of a broken bridge stays up.
            for leg in (caller, other):
                if leg.state is not CallState.ENDED:
                    self.hangup(leg, reason)
        return first

    # ---- ending -----------------------------------------------------------------------------

    async def _record(self, call: Call, outcome: str) -> None:
        """Keep the call record in the store (a failure is logged; the call is over)."""
        if self.store is None:
            return
        now_mono, now_wall = self._now(), time.time()
        started = now_wall - (now_mono - call.started_at)
        answered = (
            now_wall - (now_mono - call.answered_at) if call.answered_at is not None else None
        )
        record = CallRecord(
            call_id=call.call_id,
            started_at=started,
            answered_at=answered,
            ended_at=now_wall,
            caller=call.caller_number,
            called=call.called,
            trunk=call.trunk,
            queue=call.queue,
            agent=call.agent,
            menu_path=tuple(p for p in call.menu_path.split(" > ") if p),
            outcome=outcome,
            profile={
                "verified_customer": call.profile.verified_customer,
                "bad_actor": call.profile.bad_actor,
                "repeat_customer": call.profile.repeat_customer,
                **dict(call.profile.extra),
            },
            **call.metrics,
        )
        try:
            await self.store.calls.add(record)
        except StoreError as exc:
            log.error("call record not stored", call_id=call.call_id, error=str(exc))

    def spawn(self, work: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run ``work`` in the background, kept referenced until done, waited for (bounded)
        at shutdown before the store closes: for work that outlives its call."""
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    def leg(self, leg_id: int) -> MediaLeg | None:
        return self.calls.get(leg_id) or self.outbound.get(leg_id)

    def hangup(self, call: MediaLeg, reason: str) -> None:
        if call.state is CallState.ENDED:
            return
        if self.endpoint is not None and self.ua.leg(call.leg_id) is not None:
            self.endpoint.run_command(lambda now: self.ua.hangup(call.leg_id, now, reason=reason))
        self._ended(call.leg_id, reason)

    def _ended(self, leg_id: int, reason: str) -> None:
        call: MediaLeg | None = self.calls.pop(leg_id, None) or self.outbound.pop(leg_id, None)
        if call is None:
            return
        call.move(CallEvent.ENDED)
        call.end_reason = reason
        call.ended.set()
        if call.on_ended is not None:
            hook, call.on_ended = call.on_ended, None
            try:
                hook(call)
            except Exception:
                call.log.exception("on_ended hook failed")
        if call.bridge is not None:
            call.bridge.stop()  # before the endpoint closes: nothing forwards into it
            call.bridge = None
        stats = {}
        if call.rtp is not None:
            stats = call.rtp.stats.as_dict()
            call.rtp.close()
            # Break the endpoint -> callback -> call cycle now rather than in a GC pass.
            call.rtp.on_dtmf = None
        task = call.task if isinstance(call, Call) else None
        if task is not None and task is not asyncio.current_task() and not task.done():
            task.cancel()
        if isinstance(call, OutboundLeg) and not call.answered.done():
            call.answered.set_exception(OriginateFailed(487, reason))
            call.answered.exception()  # retrieved: nobody may be awaiting any more
        duration = round(self._now() - call.started_at, 3)
        call.log.info("call ended", reason=reason, duration=duration, rtp=stats)
        if isinstance(call, Call):
            self.events.publish(
                CallEnded(
                    call_id=call.call_id,
                    outcome=reason,
                    queue=call.queue,
                    agent=call.agent,
                    duration_seconds=duration,
                )
            )
            asyncio.get_running_loop().create_task(self._record(call, reason))


def _server_tls_context(listener: Listener) -> ssl.SSLContext:
    """TLS for SIP (RFC 3261 §26.2, RFC 5630): TLS 1.2+, the listener's certificate chain."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    assert listener.certificate is not None and listener.private_key is not None
    context.load_cert_chain(str(listener.certificate), str(listener.private_key))
    return context


def _info_digit(request: Request) -> str | None:
    """SIP INFO DTMF (application/dtmf-relay: ``Signal=5``), as sent by many phones."""
    if request.content_type not in ("application/dtmf-relay", "application/dtmf"):
        return None
    text = request.body.decode("ascii", "replace")
    for line in text.splitlines():
        key, _, value = line.partition("=")
        if key.strip().lower() == "signal" and value.strip()[:1] in "0123456789*#ABCD":
            return value.strip()[:1]
    if request.content_type == "application/dtmf" and text.strip()[:1] in "0123456789*#":
        return text.strip()[:1]
    return None


async def flow_behaviour(call: Call) -> None:
    """Run the call through the flow its route selects (the flow set it started with)."""
    flows = call.flows
    if flows is None:
        call.reject(500, "no flows loaded")
        return
    headers: dict[str, list[str]] = {}
    for name, value in call.request.headers:
        headers.setdefault(name, []).append(value)
    call.profile, warnings = parse_profile(headers, flows.profile)
    for warning in warnings:
        call.log.warning("caller data ignored", detail=warning)
    if call.profile != CallerProfile():
        call.log.info(
            "caller profile",
            verified_customer=call.profile.verified_customer,
            bad_actor=call.profile.bad_actor,
            repeat_customer=call.profile.repeat_customer,
            **dict(call.profile.extra),
        )
    context = CallContext(
        caller=call.caller_number,
        called=call.called,
        trunk=call.trunk,
        headers=headers,
        profile=call.profile,
    )
    try:
        session = FlowSession(flows, context)
    except KeyError as exc:
        call.log.error("no flow for this call", error=str(exc))
        call.reject(404, "no flow")
        return
    call.log.info("flow selected", flow=session.flow_id)
    await FlowRuntime(call, session).run()


def static_tts_texts(flows: FlowSet) -> set[tuple[str, str, str | None, int | None]]:
    """Every TTS text of the flows that has no placeholder, with its language/voice/rate."""
    out: set[tuple[str, str, str | None, int | None]] = set()
    for flow in flows.flows.values():
        for node in flow.nodes.values():
            for _, variants in node.prompt_sets():
                for key, items in variants.items():
                    language = flow.language or "en" if key == "default" else key
                    for item in items:
                        if isinstance(item, TtsItem) and "{" not in item.tts:
                            out.add((item.tts, item.language or language, item.voice, item.rate))
    return out
