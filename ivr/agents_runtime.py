"""Agents' phones at run time: the registrar they REGISTER with and their feature-code calls.

REGISTER (RFC 3261 §10.3) is digest-authenticated (RFC 8760: SHA-256 and MD5) against the
agents' ``sip`` credentials in ``acd.agents``: no credentials -> 401 with a challenge per
algorithm, wrong credentials or someone else's AOR -> 403. Bindings live in the sans-IO
:class:`sipstack.registrar.Registrar` and are mirrored in the embedded store; at start the
unexpired ones are restored from the store (so phones need not re-register after a restart;
a TCP/TLS contact is then reached on a new connection). Every change (REGISTER, unregister,
expiry found by the periodic sweep) feeds ``Acd.registration_changed``.

Feature codes (``acd.feature_codes``: log in/out, ready/not ready) are INVITEs from an
agent's phone to the code, digest-authenticated the same way: answered, the command applied,
a short spoken confirmation, hung up.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from sipstack import ua as sip
from sipstack.auth import AuthResultKind, DigestServer, ha1, parse_credentials
from sipstack.registrar import Binding, Registrar
from sipstack.uri import Uri

from .acd import AgentCommand, AgentConfig, IllegalTransition
from .store import Registration, StoreError

if TYPE_CHECKING:
    from .call import Call, CallCore


class AgentStates(Protocol):
    """What the agents' phones tell the queue runtime (``ivr.queueing.AcdRuntime``)."""

    def registration_changed(self, agent_id: str, contacts: int) -> None: ...

    def agent_command(self, agent_id: str, command: str) -> dict[str, Any]: ...


log = structlog.get_logger("switchhook.agents")

_CONFIRMATIONS = {
    AgentCommand.LOG_IN: "You are logged in.",
    AgentCommand.LOG_OUT: "You are logged out.",
    AgentCommand.READY: "You are ready.",
    AgentCommand.NOT_READY: "You are not ready.",
}


class AgentPhones:
    """The agents' registrar and feature-code calls for one engine."""

    def __init__(self, engine: CallCore, runtime: AgentStates) -> None:
        self.engine = engine
        self.runtime = runtime
        acd = engine.settings.acd
        self.settings = acd
        config = acd.registrar
        self.digest = DigestServer(
            config.realm, secrets.token_bytes(32), algorithms=config.algorithms
        )
        self.registrar = Registrar(
            min_expires=config.min_expires_seconds,
            max_expires=config.max_expires_seconds,
            default_expires=config.default_expires_seconds,
            max_contacts_per_aor=config.max_contacts_per_agent,
        )
        self._agent_of_aor: dict[str, str] = {}
        self._aors_of_agent: dict[str, set[str]] = {}
        self._sweeper: asyncio.TimerHandle | None = None
        self._codes = {
            acd.feature_codes.log_in: AgentCommand.LOG_IN,
            acd.feature_codes.log_out: AgentCommand.LOG_OUT,
            acd.feature_codes.ready: AgentCommand.READY,
            acd.feature_codes.not_ready: AgentCommand.NOT_READY,
        }

    # ---- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        engine = self.engine
        if not self.settings.agents:
            return
        if engine.store is not None:
            try:
                stored = await engine.store.registrations.find(now=time.time())
            except StoreError as exc:
                log.error("registrations not restored", error=str(exc))
                stored = []
            mono, wall = self._now(), time.time()
            restored: list[Binding] = []
            for registration in stored:
                agent = self._agent_for_aor(registration.aor)
                if agent is None:
                    continue
                binding = registration.to_binding(mono_now=mono, wall_now=wall)
                restored.append(binding)
                self._remember(binding.aor, agent.id)
            self.registrar.restore(restored, mono)
            log.info("registrations restored", bindings=len(restored))
            for agent_id in sorted({self._agent_of_aor[b.aor] for b in restored}):
                self._changed(agent_id)
        engine.request_hooks.append(self._on_request)
        engine.invite_hooks.append(self._on_invite)
        self._arm_sweep()

    def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    # ---- bindings -----------------------------------------------------------------------------

    def bindings(self, agent_id: str) -> list[Binding]:
        """The agent's live contacts, highest q first."""
        now = self._now()
        found: list[Binding] = []
        for aor in sorted(self._aors_of_agent.get(agent_id, ())):
            found.extend(self.registrar.bindings(aor, now))
        return sorted(found, key=lambda b: -b.q)

    def snapshot(self) -> list[dict[str, Any]]:
        now = self._now()
        return [
            {
                "agent_id": self._agent_of_aor.get(b.aor),
                "aor": b.aor,
                "contact": b.contact,
                "expires_in": b.expires_in(now),
                "transport": b.flow.transport,
                "source": f"{b.flow.remote[0]}:{b.flow.remote[1]}",
                "user_agent": b.user_agent,
            }
            for b in self.registrar.all_bindings(now)
        ]

    def _agent_for_aor(self, aor: str) -> AgentConfig | None:
        user = aor.split(":", 1)[-1].split("@", 1)[0] if "@" in aor else ""
        return self.settings.agent_by_username(user) if user else None

    def _remember(self, aor: str, agent_id: str) -> None:
        self._agent_of_aor[aor] = agent_id
        self._aors_of_agent.setdefault(agent_id, set()).add(aor)

    def _changed(self, agent_id: str) -> None:
        self.runtime.registration_changed(agent_id, len(self.bindings(agent_id)))

    def _arm_sweep(self) -> None:
        loop = asyncio.get_running_loop()
        self._sweeper = loop.call_later(self.settings.registrar.sweep_seconds, self._sweep)

    def _sweep(self) -> None:
        """Drop expired bindings (the registrar only hides them) and tell the ACD."""
        gone = self.registrar.expire(self._now())
        for agent_id in sorted(
            {self._agent_of_aor[b.aor] for b in gone if b.aor in self._agent_of_aor}
        ):
            log.info("registration expired", agent=agent_id)
            self._changed(agent_id)
        if gone and self.engine.store is not None:
            self._background(self.engine.store.registrations.purge_expired(time.time()))
        self._arm_sweep()

    def _background(self, work: Any) -> None:
        async def run() -> None:
            try:
                await work
            except StoreError as exc:
                log.error("registration store write failed", error=str(exc))

        asyncio.get_running_loop().create_task(run())

    # ---- digest -------------------------------------------------------------------------------

    def _ha1(self, username: str, realm: str, algorithm: str) -> str | None:
        agent = self.settings.agent_by_username(username)
        if agent is None:
            return None
        secret = agent.sip
        if secret.password is not None:
            return ha1(username, realm, secret.password.get_secret_value(), algorithm)
        if secret.ha1 is not None and secret.ha1_algorithm == algorithm:
            return secret.ha1.get_secret_value().strip().lower()
        return None

    def _authenticate(
        self, request: Any, now: float
    ) -> AgentConfig | tuple[int, list[tuple[str, str]], str]:
        """The agent the request's credentials prove, or (status, headers, reason)."""
        credentials = request.headers.get("Authorization")
        if credentials is None:
            return (
                401,
                [("WWW-Authenticate", v) for v in self.digest.challenge(now)],
                "no credentials",
            )
        parsed = parse_credentials(credentials)
        if parsed is None:
            return 403, [], "malformed Authorization"
        result = self.digest.verify(
            credentials, method=request.method, now=now, lookup_ha1=self._ha1
        )
        if result.kind is AuthResultKind.STALE:
            return (
                401,
                [("WWW-Authenticate", v) for v in self.digest.challenge(now, stale=True)],
                "stale nonce",
            )
        if result.kind is not AuthResultKind.OK or result.username is None:
            return 403, [], f"bad credentials ({result.reason})"
        agent = self.settings.agent_by_username(result.username)
        if agent is None:
            return 403, [], "unknown agent"
        return agent

    # ---- REGISTER -----------------------------------------------------------------------------

    def _on_request(self, event: sip.RequestReceived) -> bool:
        request = event.request
        if request.method != "REGISTER":
            return False
        to_user = request.to.uri.user or ""
        if self.settings.agent_by_username(to_user) is None:
            return False  # not an agent's AOR: another registrar (supervisors) or 403
        now = self._now()
        bound = log.bind(
            aor_user=to_user,
            source=f"{event.flow.remote[0]}:{event.flow.remote[1]}",
            transport=event.flow.transport,
        )
        outcome = self._authenticate(request, now)
        if not isinstance(outcome, AgentConfig):
            status, headers, reason = outcome
            self.engine.ua.respond(event.transaction_id, status, now, headers=headers)
            (bound.info if status == 401 else bound.warning)(
                "register refused" if status == 403 else "register challenged", reason=reason
            )
            return True
        agent = outcome
        # §10.3 step 6: a user may only register its own address of record.
        if agent.sip.username.lower() != to_user.lower():
            self.engine.ua.respond(event.transaction_id, 403, now)
            bound.warning("register refused", reason=f"{agent.id} may not register {to_user}")
            return True
        result = self.registrar.register(request, event.flow, now)
        self.engine.ua.respond(
            event.transaction_id,
            result.status_code,
            now,
            reason=result.reason,
            headers=result.headers,
        )
        if result.status_code != 200:
            bound.info("register refused", status=result.status_code, reason=result.reason)
            return True
        self._remember(result.aor, agent.id)
        store = self.engine.store
        wall = time.time()
        for binding in result.added:
            if store is not None:
                self._background(
                    store.registrations.put(
                        Registration.from_binding(binding, mono_now=now, wall_now=wall)
                    )
                )
        for binding in result.removed:
            if store is not None:
                self._background(store.registrations.delete(binding.aor, binding.contact))
        contacts = len(self.bindings(agent.id))
        bound.info(
            "agent registered" if contacts else "agent unregistered",
            agent=agent.id,
            contacts=contacts,
            added=len(result.added),
            removed=len(result.removed),
        )
        if result.added or result.removed:
            self._changed(agent.id)
        return True

    # ---- feature codes ------------------------------------------------------------------------

    def _on_invite(self, event: sip.InviteReceived) -> Callable[[Call], Any] | bool | None:
        request = event.request
        code = request.request_uri.user or ""
        command = self._codes.get(code)
        if command is None:
            return None
        now = self._now()
        outcome = self._authenticate(request, now)
        if not isinstance(outcome, AgentConfig):
            status, headers, reason = outcome
            self.engine.ua.reject(event.leg_id, status, now, headers=headers)
            log.info(
                "feature code refused" if status == 403 else "feature code challenged",
                code=code,
                reason=reason,
            )
            return True
        agent = outcome

        async def behaviour(call: Call) -> None:
            if not await call.answer():
                return
            text = _CONFIRMATIONS[command]
            try:
                self.runtime.agent_command(agent.id, command.value)
                call.log.info("feature code", agent=agent.id, code=code, command=command.value)
            except IllegalTransition as exc:
                text = "Not possible now."
                call.log.info("feature code refused", agent=agent.id, code=code, error=str(exc))
            await call.confirmed.wait()
            await call.play(await self.engine.tts(text))
            call.hangup("feature code done")

        return behaviour


def uri_user(uri: Uri) -> str:
    return uri.user or ""
