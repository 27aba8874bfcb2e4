"""ivr.config: shipped configs load clean; bad configs give exact located messages."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from ivr.config import ConfigError, Settings, load_settings

ROOT = Path(__file__).resolve().parents[3]
CONFIG_DIR = ROOT / "config"
BAD_DIR = ROOT / "tests" / "golden" / "config" / "bad"
BAD_FILES = sorted(BAD_DIR.glob("*.yaml"))


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "switchhook.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def messages(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        load_settings(write(tmp_path, text))
    return [f"{p.line}:{p.column}: {p.path}: {p.message}" for p in exc.value.problems]


# --- shipped configs ----------------------------------------------------------------------------


def test_default_config_loads_clean() -> None:
    settings = load_settings(CONFIG_DIR / "switchhook.yaml")
    localhost = ipaddress.ip_address("127.0.0.1")
    assert [(ls.transport, ls.host, ls.port) for ls in settings.sip.listen] == [
        ("udp", localhost, 5060),
        ("tcp", localhost, 5060),
    ]
    (local,) = settings.trunks
    assert local.name == "local"
    assert local.sources == (
        ipaddress.ip_network("127.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
    )
    assert local.require == "source"
    assert settings.media_address == localhost
    assert (settings.media.rtp_port_min, settings.media.rtp_port_max) == (20000, 30000)
    # Relative paths resolve against the config file's directory.
    assert settings.media.prompts_dir == ROOT / "flows" / "prompts"
    assert settings.media.tts.cache_dir == ROOT / "var" / "tts-cache"


def test_default_config_matches_built_in_defaults_where_documented() -> None:
    settings = load_settings(CONFIG_DIR / "switchhook.yaml")
    defaults = Settings()
    assert settings.sip == defaults.sip
    assert settings.shutdown == defaults.shutdown
    assert settings.flows.watch is True and settings.flows.dir == ROOT / "flows"
    assert settings.shutdown == defaults.shutdown
    assert settings.logging == defaults.logging
    assert settings.admin == defaults.admin


def test_carrier_example_loads_clean() -> None:
    settings = load_settings(CONFIG_DIR / "examples" / "carrier-trunk.yaml")
    carrier, pbx, gateway = settings.trunks
    assert carrier.require == "source"
    assert pbx.require == "auth"
    assert pbx.auth is not None and pbx.auth.algorithms == ("SHA-256", "MD5")
    assert gateway.require == "source_and_auth"
    # An HA1 of 32 hex digits is an MD5 HA1.
    assert gateway.auth is not None and gateway.auth.algorithms == ("MD5",)
    assert str(settings.sip.advertised_address) == "203.0.113.10"
    assert settings.trunk("carrier") is carrier


# --- golden bad configs -------------------------------------------------------------------------


def test_every_bad_file_has_an_expected_output() -> None:
    assert len(BAD_FILES) >= 10
    for bad in BAD_FILES:
        assert bad.with_suffix(".expected").is_file(), bad.name


@pytest.mark.parametrize("bad", BAD_FILES, ids=lambda p: p.stem)
def test_bad_config_gives_exact_located_messages(
    bad: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(BAD_DIR)
    with pytest.raises(ConfigError) as exc:
        load_settings(bad.name)
    expected = bad.with_suffix(".expected").read_text(encoding="utf-8")
    assert str(exc.value) + "\n" == expected


def test_several_problems_are_all_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(BAD_DIR)
    with pytest.raises(ConfigError) as exc:
        load_settings("several-problems.yaml")
    paths = [p.path for p in exc.value.problems]
    for section in (
        "sip.listen",
        "sip.timers",
        "media",
        "trunks",
        "flows",
        "shutdown",
        "logging",
        "admin",
    ):
        assert any(path.startswith(section) for path in paths), section
    lines = [p.line for p in exc.value.problems]
    assert lines == sorted(lines)


# --- individual rules ---------------------------------------------------------------------------


def test_empty_file_is_valid(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, "# nothing\n"))
    assert settings.sip.user_agent == "switchhook/0.1"
    assert settings.sip.timers.t1_ms == 500
    assert settings.media.codecs == ("PCMU", "PCMA")
    assert settings.media.dtmf_payload_type == 101
    assert settings.trunks == ()
    assert settings.routes.default == "default"
    assert settings.shutdown.mode == "drain" and settings.shutdown.grace_seconds == 30
    assert settings.logging.format == "json"
    assert settings.admin.enabled is False
    assert settings.media.prompts_dir == tmp_path / "prompts"


def test_store_crm_and_mqtt_paths_resolve_against_the_config_directory(tmp_path: Path) -> None:
    text = (
        "store: {audio_dir: /srv/audio}\n"
        "crm: {url: 'https://crm.example.com/hook', api_key: k, ca_file: certs/crm.pem}\n"
        "mqtt: {host: broker, ca_file: ../mqtt-ca.pem}\n"
    )
    settings = load_settings(write(tmp_path, text))
    assert settings.store.path == tmp_path / "var" / "switchhook.db"  # the default, too
    assert settings.store.audio_dir == Path("/srv/audio")
    assert settings.crm is not None and settings.crm.ca_file == tmp_path / "certs" / "crm.pem"
    assert settings.mqtt is not None and settings.mqtt.ca_file == tmp_path.parent / "mqtt-ca.pem"
    bare = load_settings(write(tmp_path, "crm: {url: 'https://crm.example.com/hook', api_key: k}"))
    assert bare.crm is not None and bare.crm.ca_file is None


def test_settings_are_frozen(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, ""))
    with pytest.raises(ValueError):
        settings.sip.max_calls = 3  # type: ignore[misc]


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        load_settings(tmp_path / "absent.yaml")
    assert str(exc.value) == f"{tmp_path / 'absent.yaml'}: file not found"


def test_ipv6_listener_and_duplicates(tmp_path: Path) -> None:
    assert messages(
        tmp_path,
        "sip:\n"
        "  listen:\n"
        "    - {transport: udp, host: '::1', port: 5060}\n"
        "    - {transport: udp, host: '0:0::1', port: 5060}\n"
        "    - {transport: tcp, host: '::1', port: 5060}\n",
    ) == ["4:7: sip.listen[1]: duplicate listener udp [::1]:5060"]


def test_empty_listen_list(tmp_path: Path) -> None:
    assert messages(tmp_path, "sip:\n  listen: []\n") == [
        "2:11: sip.listen: needs at least one listener"
    ]


def test_tls_listener_with_existing_files(tmp_path: Path) -> None:
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "cert.pem").write_text("x")
    (tmp_path / "certs" / "key.pem").write_text("x")
    settings = load_settings(
        write(
            tmp_path,
            "sip:\n"
            "  listen:\n"
            "    - transport: tls\n"
            "      host: 127.0.0.1\n"
            "      port: 5061\n"
            "      certificate: certs/cert.pem\n"
            "      private_key: certs/key.pem\n",
        )
    )
    assert settings.sip.listen[0].certificate == tmp_path / "certs" / "cert.pem"


def test_tls_listener_needs_both_files(tmp_path: Path) -> None:
    assert messages(
        tmp_path, "sip:\n  listen:\n    - {transport: tls, host: 127.0.0.1, port: 5061}\n"
    ) == [
        "3:7: sip.listen[0].certificate: required for a tls listener",
        "3:7: sip.listen[0].private_key: required for a tls listener",
    ]


def test_certificate_on_udp_is_refused(tmp_path: Path) -> None:
    (tmp_path / "c.pem").write_text("x")
    assert messages(
        tmp_path,
        "sip:\n  listen:\n    - {transport: udp, host: 127.0.0.1, certificate: c.pem}\n",
    ) == ["3:54: sip.listen[0].certificate: only valid for a tls listener"]


def test_user_agent_refuses_line_breaks(tmp_path: Path) -> None:
    assert messages(tmp_path, 'sip:\n  user_agent: "x\\r\\nVia: evil"\n') == [
        "2:15: sip.user_agent: must not contain control characters (line breaks, tabs)"
    ]


def test_limits_and_max_calls(tmp_path: Path) -> None:
    assert messages(
        tmp_path,
        "sip:\n  max_calls: -1\n  limits:\n    max_message_bytes: 2000\n    max_line_bytes: 4000\n",
    ) == [
        "2:14: sip.max_calls: must be >= 0 (got -1)",
        "5:21: sip.limits.max_line_bytes: max_line_bytes (4000) must not exceed "
        "max_message_bytes (2000)",
    ]


def test_media_checks(tmp_path: Path) -> None:
    assert messages(
        tmp_path,
        "media:\n"
        "  address: not-an-ip\n"
        "  codecs: [PCMU, PCMU]\n"
        "  dtmf_payload_type: 8\n"
        "  rtp_port_max: 65535\n",
    ) == [
        "2:12: media.address: 'not-an-ip' is not a valid IPv4 or IPv6 address",
        "3:11: media.codecs: lists a codec more than once",
        "4:22: media.dtmf_payload_type: must be >= 96 (got 8)",
    ]
    assert messages(tmp_path, "media:\n  rtp_port_max: 65535\n") == [
        "2:17: media.rtp_port_max: must leave room for RTCP on the next port (max 65534)"
    ]


def test_media_address_defaults_to_sip_public_address(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, "sip:\n  public_address: 192.0.2.7\n"))
    assert str(settings.media_address) == "192.0.2.7"
    assert list(settings.media.rtp_ports)[:2] == [20000, 20002]


def test_trunk_require_derivation_and_consistency(tmp_path: Path) -> None:
    settings = load_settings(
        write(
            tmp_path,
            "trunks:\n"
            "  - name: a\n"
            "    sources: [192.0.2.0/24]\n"
            "    auth: {username: u, password: p}\n"
            "    require: source_or_auth\n",
        )
    )
    assert settings.trunks[0].require == "source_or_auth"
    assert messages(
        tmp_path,
        "trunks:\n  - name: a\n    sources: [192.0.2.0/24]\n    require: auth\n",
    ) == ["4:14: trunks[0].require: require: auth needs 'auth'"]


def test_digest_auth_rules(tmp_path: Path) -> None:
    assert messages(
        tmp_path,
        "trunks:\n"
        "  - name: a\n"
        "    auth: {username: u}\n"
        "  - name: b\n"
        "    auth: {username: u, ha1: abc, algorithms: [MD5]}\n"
        "  - name: c\n"
        "    auth: {username: u, password: p, algorithms: [SHA-1]}\n",
    ) == [
        "3:11: trunks[0].auth: give exactly one of 'password' or 'ha1' (got neither)",
        "5:30: trunks[1].auth.ha1: must be 32 hex digits for MD5",
        "7:51: trunks[2].auth.algorithms[0]: must be one of 'SHA-256', 'MD5' (got 'SHA-1')",
    ]


def test_password_is_not_in_repr(tmp_path: Path) -> None:
    settings = load_settings(
        write(tmp_path, "trunks:\n  - name: a\n    auth: {username: u, password: hunter2}\n")
    )
    assert "hunter2" not in repr(settings)
    auth = settings.trunks[0].auth
    assert auth is not None and auth.password is not None
    assert auth.password.get_secret_value() == "hunter2"


def test_logging_level_is_case_insensitive(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, "logging:\n  level: DEBUG\n  file: log/x.log\n"))
    assert settings.logging.level == "debug"
    assert settings.logging.file == tmp_path / "log" / "x.log"


def test_admin_listen_accepts_ipv6(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, "admin:\n  listen: '[::1]:9000'\n"))
    assert settings.admin.listen == "[::1]:9000"


def test_section_of_the_wrong_type(tmp_path: Path) -> None:
    assert messages(tmp_path, "sip: yes\n") == [
        "1:6: sip: must be a mapping of 'key: value' entries (got true)"
    ]
