"""ACD configuration: agents, queues, whisper defaults (frozen pydantic v2, ``extra="forbid"``).

Embed :class:`AcdSettings` in the engine settings (e.g. ``acd: AcdSettings``). Every problem is
reported through :mod:`ivr.yamlloc` with its location, all at once: per-field problems from
pydantic, and cross-item problems (duplicate agent ids or SIP usernames, an agent in a queue that
does not exist, an overflow to an unknown queue) from :func:`check_acd`, which the engine may also
call itself when it embeds ``agents`` and ``queues`` elsewhere.
"""

from __future__ import annotations

import difflib
import re
import string
from collections.abc import Sequence
from typing import Annotated, Any, Literal, Self, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    model_validator,
)

from ivr.yamlloc import DocPath, located_error, merge_errors, no_control_chars

__all__ = [
    "TEMPLATE_FIELDS",
    "AcdSettings",
    "AgentConfig",
    "AgentRegistrar",
    "AgentSip",
    "AudioSource",
    "FeatureCodes",
    "OfferSettings",
    "PeriodicAnnouncement",
    "PriorityRule",
    "QueueConfig",
    "QueueMembership",
    "QueueWhisper",
    "SmsGateway",
    "SmsSettings",
    "Strategy",
    "ToneServer",
    "WhisperDefaults",
    "check_acd",
    "parse_overflow_target",
]


_M = TypeVar("_M", bound=BaseModel)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


_NAME = r"^[A-Za-z0-9_.-]{1,64}$"
Name = Annotated[str, Field(pattern=_NAME)]
"""Agent ids, queue names and team names: they appear in logs, metrics labels and SIP headers."""


Text = Annotated[str, Field(min_length=1, max_length=500), AfterValidator(no_control_chars)]

MIN_SPEED = 0.5
MAX_SPEED = 2.0


def _speed(value: float) -> float:
    if not MIN_SPEED <= value <= MAX_SPEED:
        raise ValueError(
            f"playback speed must be between {MIN_SPEED} and {MAX_SPEED} (got {value:g})"
        )
    return value


Speed = Annotated[float, AfterValidator(_speed)]

TEMPLATE_FIELDS = frozenset(
    {"call_type", "queue", "caller_number", "caller_name", "language", "menu_path"}
)
"""Placeholders a whisper template may use."""


def _template(value: str) -> str:
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(value) if name is not None}
    except ValueError as exc:
        raise ValueError(f"is not a valid template: {exc}") from None
    for name in sorted(names):
        if name not in TEMPLATE_FIELDS:
            hint = difflib.get_close_matches(name, sorted(TEMPLATE_FIELDS), n=1, cutoff=0.6)
            message = f"unknown placeholder {{{name}}}"
            if hint:
                message += f"; did you mean {{{hint[0]}}}?"
            message += f" (available: {', '.join(sorted(TEMPLATE_FIELDS))})"
            raise ValueError(message)
    return value


Template = Annotated[str, Field(min_length=1, max_length=500), AfterValidator(_template)]


# --------------------------------------------------------------------------------------------
# audio


def _audio_shorthand(value: Any) -> Any:
    # A bare string is the common case: speak it.
    return {"tts": value} if isinstance(value, str) else value


class AudioSource(_Model):
    """One of: ``file`` (WAV/MP3 under the prompts directory), ``tts`` text, or a ``tone``
    (one to four frequencies in Hz, ``ms`` on then ``pause_ms`` of silence, looped as hold
    audio). A plain string is shorthand for ``tts``."""

    file: Annotated[str, Field(min_length=1, max_length=500)] | None = None
    tts: Annotated[str, Field(min_length=1, max_length=2000)] | None = None
    voice: Annotated[str, Field(min_length=1, max_length=100)] | None = None
    tone: tuple[Annotated[float, Field(ge=20, le=4000)], ...] | None = Field(
        default=None, min_length=1, max_length=4
    )
    ms: int = Field(default=1000, ge=1, le=60000)
    pause_ms: int = Field(default=0, ge=0, le=60000)

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        given = [name for name in ("file", "tts", "tone") if getattr(self, name) is not None]
        if len(given) != 1:
            got = "neither" if not given else " and ".join(given)
            raise located_error(((), f"give exactly one of 'file', 'tts' or 'tone' (got {got})"))
        if self.voice is not None and self.tts is None:
            raise located_error((("voice",), "only valid with 'tts'"))
        return self


Audio = Annotated[AudioSource, BeforeValidator(_audio_shorthand)]


# --------------------------------------------------------------------------------------------
# agents


_HA1_HEX_LENGTH = {"MD5": 32, "SHA-256": 64}


class AgentSip(_Model):
    """The credentials the agent's phone registers with (RFC 8760 digest): ``password`` or
    ``ha1`` (hex of H(username:realm:password); 32 digits for MD5, 64 for SHA-256)."""

    username: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.!~*'()&=+$,;?/-]{1,64}$")]
    password: SecretStr | None = None
    ha1: SecretStr | None = None

    @model_validator(mode="after")
    def _one_secret(self) -> Self:
        if (self.password is None) == (self.ha1 is None):
            which = "both" if self.password is not None else "neither"
            raise located_error(((), f"give exactly one of 'password' or 'ha1' (got {which})"))
        if self.ha1 is not None:
            ha1 = self.ha1.get_secret_value().strip()
            if len(ha1) not in _HA1_HEX_LENGTH.values() or not all(
                c in string.hexdigits for c in ha1
            ):
                raise located_error((("ha1",), "must be 32 (MD5) or 64 (SHA-256) hex digits"))
        return self

    @property
    def ha1_algorithm(self) -> str | None:
        """The digest algorithm the HA1 belongs to, or None when a password is given."""
        if self.ha1 is None:
            return None
        length = len(self.ha1.get_secret_value().strip())
        return "MD5" if length == _HA1_HEX_LENGTH["MD5"] else "SHA-256"


def _membership_shorthand(value: Any) -> Any:
    return {"queue": value} if isinstance(value, str) else value


class QueueMembership(_Model):
    """An agent's membership of a queue. ``level`` is a skill tier: the agents with the lowest
    level among those offerable get the call (1 = primary, 2 = backup, ...); the queue's
    strategy chooses within that tier. A plain string is shorthand for ``{queue: name}``."""

    queue: Name
    level: int = Field(default=1, ge=1, le=9)


class AgentConfig(_Model):
    id: Name
    display_name: Text
    sip: AgentSip
    teams: tuple[Name, ...] = ()
    queues: tuple[Annotated[QueueMembership, BeforeValidator(_membership_shorthand)], ...] = ()
    sms_number: Annotated[str, Field(pattern=r"^\+[1-9][0-9]{6,14}$")] | None = None

    def level_in(self, queue: str) -> int | None:
        return next((m.level for m in self.queues if m.queue == queue), None)


# --------------------------------------------------------------------------------------------
# queues


_PRIORITY_NAME = re.compile(r"^(profile\.)?[a-z][a-z0-9_]{0,62}$")


def _priority_names(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


def _priority_name(value: str) -> str:
    if not _PRIORITY_NAME.match(value):
        raise ValueError(
            f"{value!r} is neither 'profile.<field>' (e.g. profile.repeat_customer) "
            "nor a flow variable name"
        )
    return value


class PriorityRule(_Model):
    """Callers for whom any name in ``when`` is truthy (``profile.<field>`` or a flow variable)
    get ``priority``; the highest matching rule wins; no match is priority 0. Higher priority
    callers are served first, FIFO among equals."""

    when: Annotated[
        tuple[Annotated[str, AfterValidator(_priority_name)], ...],
        BeforeValidator(_priority_names),
        Field(min_length=1),
    ]
    priority: int = Field(ge=1, le=100)


class PeriodicAnnouncement(_Model):
    """Played to each waiting caller every ``every_seconds`` (first one ``every_seconds`` after
    the caller joined the queue)."""

    every_seconds: float = Field(ge=5, le=3600)
    audio: Audio


OverflowKind = Literal["queue", "voicemail", "node"]
_OVERFLOW = re.compile(r"^(queue|voicemail|node):([A-Za-z0-9_.-]{1,64})$")


def parse_overflow_target(target: str) -> tuple[OverflowKind, str]:
    """``"queue:sales"`` -> ``("queue", "sales")``; raises ValueError when malformed."""
    match = _OVERFLOW.match(target)
    if match is None:
        raise ValueError(
            f"{target!r} is not an overflow target; write queue:<name>, voicemail:<box> "
            "or node:<flow node id>"
        )
    kind: OverflowKind = match.group(1)  # type: ignore[assignment]
    return kind, match.group(2)


def _overflow(value: str) -> str:
    parse_overflow_target(value)
    return value


class OfferSettings(_Model):
    """How an agent is notified. Each offer rings for ``timeout_seconds``. With
    ``renotify_every_seconds`` null, the call then moves on and the agent may be offered again as
    soon as the rotation comes back; with N, an agent who missed an offer is re-notified N seconds
    after the start of the missed offer while a caller waits. ``ring_tone`` is sent as
    ``Alert-Info`` (an http(s) URL or an uploaded file the engine serves)."""

    timeout_seconds: float = Field(default=20, gt=0, le=300)
    renotify_every_seconds: float | None = Field(default=None, gt=0, le=3600)
    ring_tone: Text | None = None
    max_missed_offers_before_not_ready: int = Field(default=3, ge=0, le=100)

    @model_validator(mode="after")
    def _renotify_after_timeout(self) -> Self:
        every = self.renotify_every_seconds
        if every is not None and every < self.timeout_seconds:
            raise located_error(
                (
                    ("renotify_every_seconds",),
                    f"must be at least timeout_seconds ({self.timeout_seconds:g}): an offer "
                    "cannot be renewed while it is still ringing",
                )
            )
        return self


class QueueWhisper(_Model):
    """Per-queue whisper; every unset field inherits from the global :class:`WhisperDefaults`.
    At most one of ``template``, ``queue_name: true``, ``tts`` or ``file`` says what is played."""

    enabled: bool | None = None
    call_type: Text | None = None
    template: Template | None = None
    queue_name: bool | None = None
    tts: Annotated[str, Field(min_length=1, max_length=2000)] | None = None
    file: Annotated[str, Field(min_length=1, max_length=500)] | None = None
    speed: Speed | None = None
    countdown: bool | None = None

    @model_validator(mode="after")
    def _one_announcement(self) -> Self:
        given = [name for name in ("template", "tts", "file") if getattr(self, name) is not None]
        if self.queue_name:
            given.append("queue_name")
        if len(given) > 1:
            raise located_error(
                (
                    (given[1],),
                    f"give only one of template, queue_name, tts or file "
                    f"(got {' and '.join(given)})",
                )
            )
        return self


class WhisperDefaults(_Model):
    """Global whisper: ``template`` rendered with the call type and the queue's display name
    ("Inbound call from Billing"), at ``speed``; then the countdown when enabled."""

    enabled: bool = True
    call_type: Text = "Inbound call"
    template: Template = "{call_type} from {queue}"
    speed: Speed = 1.0
    countdown: bool = False
    countdown_text: Text = "Your turn! Call starts in 3, 2, 1"


class SmsSettings(_Model):
    """Send the agent an SMS (through the engine's gateway) on each offer."""

    enabled: bool = False


Strategy = Literal["longest_idle", "round_robin", "ring_all"]


class QueueConfig(_Model):
    name: Name
    display_name: Text | None = None
    strategy: Strategy = "longest_idle"
    priority_rules: tuple[PriorityRule, ...] = ()
    hold_audio: Audio | None = None
    periodic_announcement: PeriodicAnnouncement | None = None
    announce_position: bool = False
    announce_estimated_wait: bool = False
    position_every_seconds: float = Field(default=60, ge=10, le=3600)
    max_wait_seconds: float | None = Field(default=None, gt=0)
    max_queue_size: int | None = Field(default=None, ge=1)
    overflow: Annotated[str, AfterValidator(_overflow)] | None = None
    offer: OfferSettings = OfferSettings()
    wrap_up_seconds: float = Field(default=0, ge=0, le=3600)
    whisper: QueueWhisper = QueueWhisper()
    sms: SmsSettings = SmsSettings()

    @property
    def spoken_name(self) -> str:
        """What callers and agents hear: ``display_name``, else the name."""
        return self.display_name if self.display_name is not None else self.name

    @model_validator(mode="after")
    def _overflow_needed(self) -> Self:
        if self.overflow is None:
            limits = [n for n in ("max_wait_seconds", "max_queue_size") if getattr(self, n)]
            if limits:
                raise located_error(
                    (
                        (limits[0],),
                        f"{limits[0]} needs an 'overflow' target "
                        "(queue:<name>, voicemail:<box> or node:<id>)",
                    )
                )
        return self


class FeatureCodes(_Model):
    """Codes an agent dials from the phone; they map to the same commands as the API."""

    log_in: Annotated[str, Field(pattern=r"^[*#0-9]{2,8}$")] = "*41"
    log_out: Annotated[str, Field(pattern=r"^[*#0-9]{2,8}$")] = "*42"
    ready: Annotated[str, Field(pattern=r"^[*#0-9]{2,8}$")] = "*43"
    not_ready: Annotated[str, Field(pattern=r"^[*#0-9]{2,8}$")] = "*44"

    @model_validator(mode="after")
    def _distinct(self) -> Self:
        seen: dict[str, str] = {}
        for name in ("log_in", "log_out", "ready", "not_ready"):
            code = getattr(self, name)
            if code in seen:
                raise located_error(((name,), f"{code!r} is already the code for {seen[code]}"))
            seen[code] = name
        return self


# --------------------------------------------------------------------------------------------
# cross checks


def _cross_problems(
    agents: Sequence[tuple[int, AgentConfig]],
    queues: Sequence[tuple[int, QueueConfig]],
    written_queue_names: Sequence[str] = (),
) -> list[tuple[DocPath, str]]:
    problems: list[tuple[DocPath, str]] = []
    queue_names: dict[str, int] = {}
    for index, queue in queues:
        if queue.name in queue_names:
            problems.append(
                (
                    ("queues", index, "name"),
                    f"duplicate queue name {queue.name!r} "
                    f"(first used by queues[{queue_names[queue.name]}])",
                )
            )
        else:
            queue_names[queue.name] = index
    # A queue with problems of its own still exists: do not also call its members unknown.
    known = dict(queue_names)
    for name in written_queue_names:
        known.setdefault(name, -1)

    ids: dict[str, int] = {}
    usernames: dict[str, int] = {}
    for index, agent in agents:
        if agent.id in ids:
            problems.append(
                (
                    ("agents", index, "id"),
                    f"duplicate agent id {agent.id!r} (first used by agents[{ids[agent.id]}])",
                )
            )
        else:
            ids[agent.id] = index
        # Usernames are compared case-insensitively: phones and admins are careless with case.
        username = agent.sip.username.lower()
        if username in usernames:
            problems.append(
                (
                    ("agents", index, "sip", "username"),
                    f"SIP username {agent.sip.username!r} is already used by "
                    f"agents[{usernames[username]}]",
                )
            )
        else:
            usernames[username] = index
        seen: set[str] = set()
        for position, membership in enumerate(agent.queues):
            where: DocPath = ("agents", index, "queues", position)
            if membership.queue in seen:
                problems.append((where, f"queue {membership.queue!r} is listed twice"))
            seen.add(membership.queue)
            if membership.queue not in known:
                problems.append((where, _unknown_queue(membership.queue, known)))

    for index, queue in queues:
        if queue.overflow is None:
            continue
        kind, target = parse_overflow_target(queue.overflow)
        if kind != "queue":
            continue
        if target == queue.name:
            problems.append((("queues", index, "overflow"), "a queue cannot overflow to itself"))
        elif target not in known:
            problems.append((("queues", index, "overflow"), _unknown_queue(target, known)))
    return problems


def _unknown_queue(name: str, known: dict[str, int]) -> str:
    message = f"unknown queue {name!r}"
    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
    if close:
        message += f"; did you mean {close[0]!r}?"
    elif not known:
        message += " (no queues are defined)"
    return message


def check_acd(
    agents: Sequence[AgentConfig], queues: Sequence[QueueConfig]
) -> list[tuple[DocPath, str]]:
    """Cross-item problems, as (path, message) pairs relative to the section holding
    ``agents`` and ``queues``; pass them to :func:`ivr.yamlloc.located_error`."""
    return _cross_problems(list(enumerate(agents)), list(enumerate(queues)))


class AgentRegistrar(_Model):
    """The registrar agents' phones REGISTER with (RFC 3261 §10.3, digest per RFC 8760).

    ``algorithms`` are offered in RFC 8760 preference order (SHA-256 first). Expiry is
    clamped to ``min_expires_seconds``..``max_expires_seconds`` (shorter: 423 with
    Min-Expires); expired bindings are swept every ``sweep_seconds``."""

    realm: Annotated[str, Field(min_length=1, max_length=64)] = "switchhook"
    algorithms: tuple[Literal["SHA-256", "MD5"], ...] = Field(
        default=("SHA-256", "MD5"), min_length=1
    )
    min_expires_seconds: int = Field(default=60, ge=1, le=3600)
    max_expires_seconds: int = Field(default=3600, ge=1, le=86400)
    default_expires_seconds: int = Field(default=3600, ge=1, le=86400)
    max_contacts_per_agent: int = Field(default=5, ge=1, le=20)
    sweep_seconds: float = Field(default=5, gt=0, le=300)


class SmsGateway(_Model):
    """SMS notifications on offers: a JSON POST ``{"to", "text", "call_id", "queue",
    "agent_id"}`` to ``url`` (an SMS gateway's webhook), at most ``timeout_seconds``."""

    url: Annotated[str, Field(pattern=r"^https?://\S+$")]
    timeout_seconds: float = Field(default=5, gt=0, le=60)
    text: Text = "Call waiting in {queue} from {caller}"


class ToneServer(_Model):
    """Serves uploaded ring tones (``dir``/*.mp3) over HTTP on ``listen`` (host:port), so a
    queue's ``offer.ring_tone: billing.mp3`` is sent as ``Alert-Info: <http://host:port/
    billing.mp3>``. ``base_url`` overrides the URL prefix (behind a proxy)."""

    listen: Annotated[str, Field(pattern=r"^[^\s:]+:[0-9]{1,5}$")] = "127.0.0.1:8089"
    dir: str = "tones"
    base_url: Annotated[str, Field(pattern=r"^https?://\S+$")] | None = None


class AcdSettings(_Model):
    """The ``acd`` section: global whisper, feature codes, agents and queues."""

    whisper: WhisperDefaults = WhisperDefaults()
    feature_codes: FeatureCodes = FeatureCodes()
    registrar: AgentRegistrar = AgentRegistrar()
    # Log an agent in (available) when a phone registers while the agent is logged out:
    # for sites without feature-code discipline. Default off: agents log in themselves.
    log_in_on_register: bool = False
    sms_gateway: SmsGateway | None = None
    tone_server: ToneServer | None = None
    agents: tuple[AgentConfig, ...] = ()
    queues: tuple[QueueConfig, ...] = ()

    @model_validator(mode="wrap")
    @classmethod
    def _cross_checks(
        cls, data: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo
    ) -> AcdSettings:
        # Cross checks run on the items that are valid on their own, so an admin sees a
        # duplicate id even while another agent has a typo of its own.
        problems: list[tuple[DocPath, str]] = []
        if isinstance(data, dict):
            agents = _valid_items(data.get("agents"), AgentConfig, info)
            queues = _valid_items(data.get("queues"), QueueConfig, info)
            raw_queues = data.get("queues")
            written = [
                item["name"]
                for item in (raw_queues if isinstance(raw_queues, list | tuple) else ())
                if isinstance(item, dict) and isinstance(item.get("name"), str)
            ]
            problems = _cross_problems(agents, queues, written)
        try:
            result: AcdSettings = handler(data)
        except ValidationError as exc:
            if problems:
                raise merge_errors(exc, located_error(*problems)) from None
            raise
        if problems:
            raise located_error(*problems)
        return result

    def agent(self, agent_id: str) -> AgentConfig | None:
        return next((a for a in self.agents if a.id == agent_id), None)

    def queue(self, name: str) -> QueueConfig | None:
        return next((q for q in self.queues if q.name == name), None)

    def agent_by_username(self, username: str) -> AgentConfig | None:
        wanted = username.lower()
        return next((a for a in self.agents if a.sip.username.lower() == wanted), None)


def _valid_items(value: Any, model: type[_M], info: ValidationInfo) -> list[tuple[int, _M]]:
    if not isinstance(value, list | tuple):
        return []
    valid: list[tuple[int, _M]] = []
    for index, item in enumerate(value):
        if isinstance(item, model):
            valid.append((index, item))
            continue
        try:
            valid.append((index, model.model_validate(item, context=info.context)))
        except ValidationError:
            continue
    return valid
