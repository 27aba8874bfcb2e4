"""Engine settings: the typed, frozen view of ``config/switchhook.yaml``.

``load_settings(path)`` reads the YAML with locations (``ivr.yamlloc``), validates it against
:class:`Settings` and raises one :class:`~ivr.yamlloc.ConfigError` listing every problem as
``file:line:column: path: message``. Every section has defaults, so an empty file is valid.

Relative paths in the config (TLS certificate and key, prompts, TTS cache, log file) are
resolved against the directory of the config file, not the process's working directory, so
``switchhook run`` behaves the same from anywhere. Settings built without a file (e.g.
``Settings()`` in tests) leave relative paths relative to the working directory.
"""

from __future__ import annotations

import ipaddress
import os
import re
import string
from pathlib import Path
from typing import Annotated, Any, Literal, Self

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
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from ivr.acd import AcdSettings
from ivr.admin.settings import MonitoringSettings
from ivr.crm import CrmSettings
from ivr.events import MqttSettings
from ivr.flows import ProfileConfig, RoutesConfig
from ivr.hours import AfterHoursConfig, HoursConfig
from ivr.outbox import OutboxSettings
from ivr.roles import RoleConfig, UserConfig
from ivr.store import StoreSettings
from ivr.yamlloc import (
    ConfigError,
    ConfigPath,
    DocPath,
    LocatedDocument,
    Problem,
    load_yaml,
    located_error,
    merge_errors,
    no_control_chars,
    resolve_in_context,
    validate,
)

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "AdminSettings",
    "ConfigError",
    "DigestAuth",
    "FlowsSettings",
    "Listener",
    "LoggingSettings",
    "MediaSettings",
    "Problem",
    "Settings",
    "ShutdownSettings",
    "SipLimits",
    "SipSettings",
    "SipTimers",
    "Trunk",
    "TtsSettings",
    "load_settings",
    "load_settings_document",
]

DEFAULT_CONFIG_PATH = Path("config/switchhook.yaml")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=False)


# --------------------------------------------------------------------------------------------
# Field types


def _parse_ip(value: Any) -> IPAddress:
    if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return value
    if not isinstance(value, str):
        raise PydanticCustomError(
            "ip", "must be an IPv4 or IPv6 address (got {got})", {"got": repr(value)}
        )
    try:
        return ipaddress.ip_address(value.strip())
    except ValueError:
        raise PydanticCustomError(
            "ip", "{value} is not a valid IPv4 or IPv6 address", {"value": repr(value)}
        ) from None


def _parse_cidr(value: Any) -> IPNetwork:
    if isinstance(value, ipaddress.IPv4Network | ipaddress.IPv6Network):
        return value
    if not isinstance(value, str):
        raise PydanticCustomError("cidr", "{value} is not a valid CIDR", {"value": repr(value)})
    text = value.strip()
    try:
        return ipaddress.ip_network(text, strict=True)
    except ValueError:
        pass
    try:
        network = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise PydanticCustomError(
            "cidr", "{value} is not a valid CIDR", {"value": repr(value)}
        ) from None
    # "10.1.2.3/8" is almost always a typo for a network; accepting it silently would
    # admit a far wider (or different) range than the admin meant to.
    raise PydanticCustomError(
        "cidr",
        "{value} has host bits set; did you mean {network}?",
        {"value": repr(value), "network": repr(str(network))},
    )


def _existing_file(value: Path, info: ValidationInfo) -> Path:
    resolved = resolve_in_context(value, info)
    if not resolved.is_file():
        raise PydanticCustomError(
            "file_missing", "file {value} does not exist", {"value": repr(str(value))}
        )
    return resolved


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*"
    r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.?$"
)


def _hostname(value: str) -> str:
    if not _HOSTNAME.match(value):
        try:
            ipaddress.ip_address(value)
        except ValueError:
            raise ValueError(f"{value!r} is not a valid domain name") from None
    return value


def _host_port(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        ipaddress.ip_address(host)
        port_number = int(port)
    except ValueError:
        port_number = -1
    if not sep or not 1 <= port_number <= 65535:
        raise ValueError(
            f"{value!r} is not a valid 'address:port' (e.g. '127.0.0.1:8080' or '[::1]:8080')"
        )
    return value


def _non_empty(value: tuple[Any, ...]) -> tuple[Any, ...]:
    # Not Field(min_length=1) on containers: pydantic also reports a list whose items
    # failed as "too short", a confusing second message for one problem.
    if not value:
        raise ValueError("must not be empty")
    return value


def _section() -> Any:
    # A section's default is an empty mapping validated like a written one, so defaults
    # inside it see the validation context (relative paths resolve against the config
    # file's directory even when the section is absent).
    return Field(default_factory=dict, validate_default=True)


IP = Annotated[IPAddress, BeforeValidator(_parse_ip)]
CIDR = Annotated[IPNetwork, BeforeValidator(_parse_cidr)]
ExistingFile = Annotated[Path, AfterValidator(_existing_file)]
HeaderText = Annotated[str, Field(min_length=1), AfterValidator(no_control_chars)]
Port = Annotated[int, Field(ge=1, le=65535)]


# --------------------------------------------------------------------------------------------
# sip


class Listener(_Model):
    """One SIP listening socket (UDP, TCP, or TLS with a certificate chain and key)."""

    transport: Literal["udp", "tcp", "tls"]
    host: IP
    port: Port = 5060
    certificate: ExistingFile | None = None
    private_key: ExistingFile | None = None

    @model_validator(mode="after")
    def _tls_files(self) -> Self:
        problems: list[tuple[DocPath, str]] = []
        if self.transport == "tls":
            for name in ("certificate", "private_key"):
                if getattr(self, name) is None:
                    problems.append(((name,), "required for a tls listener"))
        else:
            for name in ("certificate", "private_key"):
                if getattr(self, name) is not None:
                    problems.append(((name,), "only valid for a tls listener"))
        if problems:
            raise located_error(*problems)
        return self


def _default_listeners() -> tuple[Listener, ...]:
    localhost = ipaddress.IPv4Address("127.0.0.1")
    return (
        Listener(transport="udp", host=localhost, port=5060),
        Listener(transport="tcp", host=localhost, port=5060),
    )


class SipTimers(_Model):
    """RFC 3261 §17.1.1.1 timer values: T1 (RTT estimate), T2 (max non-INVITE retransmit
    interval), T4 (max time a message stays in the network)."""

    t1_ms: int = Field(500, ge=1)
    t2_ms: int = Field(4000, ge=1)
    t4_ms: int = Field(5000, ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.t1_ms >= self.t2_ms:
            raise located_error(
                (("t1_ms",), f"t1_ms ({self.t1_ms}) must be less than t2_ms ({self.t2_ms})")
            )
        return self


class SipLimits(_Model):
    """Bounds on what the parser accepts; anything larger gets a 4xx, never an exception."""

    max_message_bytes: int = Field(65535, ge=1024)
    max_headers: int = Field(128, ge=8)
    max_line_bytes: int = Field(8192, ge=256)

    @model_validator(mode="after")
    def _line_fits(self) -> Self:
        if self.max_line_bytes > self.max_message_bytes:
            raise located_error(
                (
                    ("max_line_bytes",),
                    f"max_line_bytes ({self.max_line_bytes}) must not exceed "
                    f"max_message_bytes ({self.max_message_bytes})",
                )
            )
        return self


class SipSettings(_Model):
    listen: tuple[Listener, ...] = Field(default_factory=_default_listeners)
    domain: Annotated[str, AfterValidator(_hostname)] | None = None
    public_address: IP | None = None
    user_agent: HeaderText = "switchhook/0.1"
    timers: SipTimers = _section()
    limits: SipLimits = _section()
    max_calls: int = Field(0, ge=0)

    @field_validator("listen", mode="wrap")
    @classmethod
    def _listeners(
        cls, value: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo
    ) -> tuple[Listener, ...]:
        # Not Field(min_length=1): see _non_empty().
        if isinstance(value, list | tuple) and not value:
            raise ValueError("needs at least one listener")
        # Duplicates are found among the listeners that are valid on their own, so they are
        # reported even when another listener has problems of its own.
        problems: list[tuple[DocPath, str]] = []
        if isinstance(value, list | tuple):
            seen: set[tuple[str, IPAddress, int]] = set()
            for index, item in enumerate(value):
                try:
                    listener = Listener.model_validate(item, context=info.context)
                except ValidationError:
                    continue
                key = (listener.transport, listener.host, listener.port)
                if key in seen:
                    where = _format_host_port(listener.host, listener.port)
                    problems.append(((index,), f"duplicate listener {listener.transport} {where}"))
                seen.add(key)
        try:
            result: tuple[Listener, ...] = handler(value)
        except ValidationError as exc:
            if problems:
                raise merge_errors(exc, located_error(*problems)) from None
            raise
        if problems:
            raise located_error(*problems)
        return result

    @property
    def advertised_address(self) -> IPAddress:
        """The address put in Contact and SDP: ``public_address``, else the first listener's."""
        return self.public_address if self.public_address is not None else self.listen[0].host


def _format_host_port(host: IPAddress, port: int) -> str:
    return f"[{host}]:{port}" if host.version == 6 else f"{host}:{port}"


# --------------------------------------------------------------------------------------------
# media


def _even_port(value: int) -> int:
    # RFC 3550 §11: RTP on an even port, RTCP on the next (odd) one.
    if value % 2:
        raise ValueError(f"must be even (RTP uses even ports; got {value})")
    return value


class TtsSettings(_Model):
    voice: str | None = None
    rate: int | None = Field(None, ge=40, le=600, description="words per minute")
    # Voice per call language (e.g. {fr: fr, en: en-us}); a language without one uses
    # ``voice``, else its own code as the espeak-ng voice name.
    voices: dict[str, str] = Field(default_factory=dict)
    cache_dir: ConfigPath = Field(Path("var/tts-cache"), validate_default=True)


class MediaSettings(_Model):
    address: IP | None = None
    rtp_port_min: Annotated[Port, AfterValidator(_even_port)] = 20000
    rtp_port_max: Port = 30000
    codecs: Annotated[tuple[Literal["PCMU", "PCMA"], ...], AfterValidator(_non_empty)] = (
        "PCMU",
        "PCMA",
    )
    dtmf_payload_type: int = Field(101, ge=96, le=127)
    tts: TtsSettings = _section()
    prompts_dir: ConfigPath = Field(Path("prompts"), validate_default=True)

    @field_validator("codecs")
    @classmethod
    def _unique_codecs(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(value)) != len(value):
            raise ValueError("lists a codec more than once")
        return value

    @model_validator(mode="after")
    def _port_range(self) -> Self:
        problems: list[tuple[DocPath, str]] = []
        if self.rtp_port_min > self.rtp_port_max:
            problems.append(
                (
                    ("rtp_port_min",),
                    f"rtp_port_min ({self.rtp_port_min}) is greater than "
                    f"rtp_port_max ({self.rtp_port_max}); the range is inverted",
                )
            )
        elif self.rtp_port_max == 65535:
            problems.append(
                (("rtp_port_max",), "must leave room for RTCP on the next port (max 65534)")
            )
        if problems:
            raise located_error(*problems)
        return self

    @property
    def rtp_ports(self) -> range:
        """Even RTP ports available (RTCP on port + 1)."""
        return range(self.rtp_port_min, self.rtp_port_max + 1, 2)


# --------------------------------------------------------------------------------------------
# trunks


Algorithm = Literal["SHA-256", "MD5"]
_HA1_HEX_LENGTH: dict[str, int] = {"MD5": 32, "SHA-256": 64}


class DigestAuth(_Model):
    """Digest credentials a trunk must present (RFC 8760: SHA-256 and MD5).

    Give either ``password`` or ``ha1`` (the hex of H(username:realm:password)). An HA1 is
    specific to one algorithm; when ``algorithms`` is not given it is inferred from the HA1's
    length (32 hex digits: MD5, 64: SHA-256).
    """

    username: HeaderText
    password: SecretStr | None = None
    ha1: SecretStr | None = None
    realm: HeaderText = "switchhook"
    algorithms: Annotated[tuple[Algorithm, ...], AfterValidator(_non_empty)] = ("SHA-256", "MD5")

    @model_validator(mode="before")
    @classmethod
    def _infer_algorithm(cls, data: Any) -> Any:
        if isinstance(data, dict) and "algorithms" not in data and isinstance(data.get("ha1"), str):
            lengths = {v: k for k, v in _HA1_HEX_LENGTH.items()}
            algorithm = lengths.get(len(data["ha1"].strip()))
            if algorithm is not None:
                return {**data, "algorithms": [algorithm]}
        return data

    @model_validator(mode="after")
    def _one_secret(self) -> Self:
        if (self.password is None) == (self.ha1 is None):
            which = "both" if self.password is not None else "neither"
            raise located_error(((), f"give exactly one of 'password' or 'ha1' (got {which})"))
        if self.ha1 is not None:
            ha1 = self.ha1.get_secret_value().strip()
            if len(self.algorithms) != 1:
                raise located_error(
                    (("algorithms",), "an ha1 works with one algorithm only: list exactly one")
                )
            expected = _HA1_HEX_LENGTH[self.algorithms[0]]
            if len(ha1) != expected or not all(c in string.hexdigits for c in ha1):
                raise located_error(
                    (("ha1",), f"must be {expected} hex digits for {self.algorithms[0]}")
                )
        if len(set(self.algorithms)) != len(self.algorithms):
            raise located_error((("algorithms",), "lists an algorithm more than once"))
        return self


Require = Literal["source", "auth", "source_and_auth", "source_or_auth"]


class OutboundRoute(_Model):
    """Where calls we place through this trunk go (a carrier's SBC, a PBX, a gateway).

    ``host`` is an IP address: the engine resolves no DNS (RFC 3263 is future work).
    ``username``/``password`` answer the peer's digest challenges (RFC 3261 §22.2).
    ``caller_id`` is the user part of From on our calls; default: the original caller.
    ``refer`` allows transferring calls out by SIP REFER instead of bridging.
    """

    host: IP
    port: Port = 5060
    transport: Literal["udp", "tcp", "tls"] = "udp"
    username: HeaderText | None = None
    password: SecretStr | None = None
    caller_id: HeaderText | None = None
    refer: bool = False

    @model_validator(mode="after")
    def _credentials_pair(self) -> Self:
        if (self.username is None) != (self.password is None):
            raise located_error(((), "give both 'username' and 'password', or neither"))
        return self


class Trunk(_Model):
    """A peer allowed to send us calls: by source address, digest auth, or both; and/or
    the route for calls we place (``outbound``).

    ``require`` defaults from what is configured: only sources -> ``source``; only auth ->
    ``auth``; both -> ``source_and_auth``.
    """

    name: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")]
    sources: tuple[CIDR, ...] = ()
    auth: DigestAuth | None = None
    require: Require = "source"
    outbound: OutboundRoute | None = None

    @model_validator(mode="before")
    @classmethod
    def _derive_require(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("require") is None:
            has_sources = bool(data.get("sources"))
            has_auth = data.get("auth") is not None
            if has_auth:
                return {**data, "require": "source_and_auth" if has_sources else "auth"}
        return data

    @model_validator(mode="after")
    def _admits_someone(self) -> Self:
        if not self.sources and self.auth is None and self.outbound is not None:
            return self  # outbound only: admits no inbound calls
        if not self.sources and self.auth is None:
            raise located_error(
                ((), f"trunk {self.name!r} has neither 'sources' nor 'auth': it would admit nobody")
            )
        needs_sources = self.require != "auth"
        needs_auth = self.require != "source"
        if needs_sources and not self.sources:
            raise located_error(
                (("require",), f"require: {self.require} needs at least one entry in 'sources'")
            )
        if needs_auth and self.auth is None:
            raise located_error((("require",), f"require: {self.require} needs 'auth'"))
        return self


# --------------------------------------------------------------------------------------------
# the rest


def _digit_template(value: str) -> str:
    try:
        fields = {name for _, name, _, _ in string.Formatter().parse(value) if name is not None}
    except ValueError as exc:
        raise ValueError(f"is not a valid template: {exc}") from None
    unknown = sorted(fields - {"digit"})
    if unknown:
        raise ValueError(
            f"unknown placeholder {{{unknown[0]}}}; only {{digit}} is available "
            "(write {{ and }} for literal braces)"
        )
    return value


class FlowsSettings(_Model):
    """Where the YAML flows live and how edits are picked up.

    ``dir``: every ``*.yaml`` there is loaded and validated together. ``watch``: reload when
    a file changes (checked every ``watch_interval_seconds``); SIGHUP always reloads. A bad
    edit is rejected with located errors in the log and the running flows stay; calls in
    progress keep the version they started with."""

    dir: ConfigPath = Field(Path("../flows"), validate_default=True)
    watch: bool = True
    watch_interval_seconds: float = Field(1.0, gt=0, le=60)


class ShutdownSettings(_Model):
    """``drain``: stop admitting new calls, let active ones finish until ``grace_seconds``,
    then hang up the rest. ``hangup``: hang up everything at once."""

    grace_seconds: float = Field(30, ge=0)
    mode: Literal["drain", "hangup"] = "drain"


class LoggingSettings(_Model):
    level: Annotated[Literal["debug", "info", "warning", "error"], BeforeValidator(_lower)] = "info"
    format: Literal["json", "console"] = "json"
    file: ConfigPath | None = None


class AdminSettings(_Model):
    """The admin HTTP API (ivr.admin): off unless enabled; ``listen`` is host:port."""

    enabled: bool = False
    listen: Annotated[str, AfterValidator(_host_port)] = "127.0.0.1:8080"


class Settings(_Model):
    """Everything ``config/switchhook.yaml`` can say; frozen, every section defaulted."""

    sip: SipSettings = _section()
    media: MediaSettings = _section()
    trunks: tuple[Trunk, ...] = ()
    flows: FlowsSettings = _section()
    routes: RoutesConfig = _section()
    profile: ProfileConfig = _section()
    hours: HoursConfig | None = None
    after_hours: AfterHoursConfig = _section()
    acd: AcdSettings = _section()
    store: StoreSettings = _section()
    outbox: OutboxSettings = _section()
    crm: CrmSettings | None = None
    mqtt: MqttSettings | None = None
    # Python GC generation thresholds. Calls create cyclic garbage (asyncio futures, frames);
    # the interpreter's default (700, 10, 10) runs a full collection every ~1 s under load,
    # stalling the media clock for 100-300 ms. Measured in bench/RESULTS.md.
    gc_thresholds: tuple[int, int, int] = (50000, 20, 100)
    # This engine's name in events, records and logs (several nodes share a broker).
    node: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")] = (
        "switchhook"
    )
    shutdown: ShutdownSettings = _section()
    logging: LoggingSettings = _section()
    admin: AdminSettings = _section()
    # Supervisors and their rights (ivr.roles; cross-checked in ivr.loading.load_all).
    users: tuple[UserConfig, ...] = ()
    roles: dict[str, RoleConfig] = Field(default_factory=dict)
    monitoring: MonitoringSettings = _section()

    @field_validator("trunks", mode="wrap")
    @classmethod
    def _unique_trunk_names(
        cls, value: Any, handler: ValidatorFunctionWrapHandler
    ) -> tuple[Trunk, ...]:
        # Checked on the raw list, so a duplicate is reported even when another trunk has
        # its own problems: the admin gets every problem in one run.
        duplicates: list[tuple[DocPath, str]] = []
        if isinstance(value, list | tuple):
            first: dict[str, int] = {}
            for index, item in enumerate(value):
                name = item.get("name") if isinstance(item, dict) else None
                if not isinstance(name, str):
                    continue
                if name in first:
                    duplicates.append(
                        (
                            (index, "name"),
                            f"duplicate trunk name {name!r} (first used by trunks[{first[name]}])",
                        )
                    )
                else:
                    first[name] = index
        try:
            result: tuple[Trunk, ...] = handler(value)
        except ValidationError as exc:
            if duplicates:
                raise merge_errors(exc, located_error(*duplicates)) from None
            raise
        if duplicates:
            raise located_error(*duplicates)
        return result

    @property
    def media_address(self) -> IPAddress:
        """The address put in SDP: ``media.address``, else the SIP advertised address."""
        if self.media.address is not None:
            return self.media.address
        return self.sip.advertised_address

    def trunk(self, name: str) -> Trunk | None:
        return next((trunk for trunk in self.trunks if trunk.name == name), None)


def load_settings(path: str | os.PathLike[str] = DEFAULT_CONFIG_PATH) -> Settings:
    """Load and validate the engine configuration; raise ConfigError listing every problem."""
    return load_settings_document(path)[1]


def load_settings_document(
    path: str | os.PathLike[str] = DEFAULT_CONFIG_PATH,
) -> tuple[LocatedDocument, Settings]:
    """Like :func:`load_settings`, also returning the located document (to locate problems
    found by later cross-checks, e.g. routes naming a missing flow)."""
    document = load_yaml(path)
    base_dir = Path(os.fspath(path)).resolve().parent
    return document, validate(document, Settings, context={"base_dir": base_dir})
