from __future__ import annotations

from pathlib import Path

import pytest

from parley.settings import Settings, SettingsError, to_asyncpg_url


def test_defaults_and_overrides(tmp_path: Path) -> None:
    settings = Settings.from_env({"PARLEY_DATA_DIR": str(tmp_path)})
    assert settings.database_url is None and settings.port == 8000
    assert settings.visitor_topic == "parley.visitor-messages"
    custom = Settings.from_env(
        {
            "PARLEY_DATA_DIR": str(tmp_path),
            "DATABASE_URL": "postgres://u:p@db/x",
            "PARLEY_PORT": "9000",
            "PARLEY_RATE_LIMIT_WINDOW": "2.5",
            "PARLEY_TOPIC_PREFIX": "acme.",
        }
    )
    assert custom.sqlalchemy_url == "postgresql+asyncpg://u:p@db/x"
    assert custom.port == 9000 and custom.rate_limit_window == 2.5
    assert custom.dead_letter_topic == "acme.visitor-messages.dead-letter"


def test_malformed_numbers_name_the_variable(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="PARLEY_PORT"):
        Settings.from_env({"PARLEY_DATA_DIR": str(tmp_path), "PARLEY_PORT": "eighty"})


def test_generated_secret_is_kept_and_reused(tmp_path: Path) -> None:
    first = Settings.from_env({"PARLEY_DATA_DIR": str(tmp_path)})
    second = Settings.from_env({"PARLEY_DATA_DIR": str(tmp_path)})
    assert first.secret == second.secret
    assert (tmp_path / "secret.key").stat().st_mode & 0o777 == 0o600
    assert first.secret.reveal() not in repr(first)


def test_configured_secret_wins(tmp_path: Path) -> None:
    secret = "s3" * 16
    settings = Settings.from_env({"PARLEY_DATA_DIR": str(tmp_path), "PARLEY_SECRET": secret})
    assert settings.secret.reveal() == secret
    assert not (tmp_path / "secret.key").exists()


def test_require_names_the_missing_url(tmp_path: Path) -> None:
    settings = Settings.from_env({"PARLEY_DATA_DIR": str(tmp_path)})
    with pytest.raises(SettingsError, match="REDIS_URL is not set"):
        settings.require("redis_url")


def test_only_postgres_urls() -> None:
    with pytest.raises(SettingsError):
        to_asyncpg_url("mysql://x/y")


@pytest.mark.parametrize("secret", ["", "   ", "s3", "x" * 31, "é" * 15])
def test_short_or_empty_configured_secret_is_refused(tmp_path: Path, secret: str) -> None:
    with pytest.raises(SettingsError, match=r"PARLEY_SECRET.*32 bytes"):
        Settings.from_env({"PARLEY_DATA_DIR": str(tmp_path), "PARLEY_SECRET": secret})
    assert not (tmp_path / "secret.key").exists()


def test_a_32_byte_secret_is_enough(tmp_path: Path) -> None:
    secret = "é" * 16  # 32 bytes in UTF-8
    settings = Settings.from_env({"PARLEY_DATA_DIR": str(tmp_path), "PARLEY_SECRET": secret})
    assert settings.secret.reveal() == secret


@pytest.mark.parametrize("content", ["", "\n", "short"])
def test_empty_or_short_secret_file_is_refused(tmp_path: Path, content: str) -> None:
    (tmp_path / "secret.key").write_text(content)
    with pytest.raises(SettingsError, match=r"secret\.key"):
        Settings.from_env({"PARLEY_DATA_DIR": str(tmp_path)})


def test_socket_transports_default_to_websocket_only(tmp_path: Path) -> None:
    assert Settings.from_env({"PARLEY_DATA_DIR": str(tmp_path)}).socket_transports == ("websocket",)
    both = Settings.from_env(
        {"PARLEY_DATA_DIR": str(tmp_path), "PARLEY_SOCKET_TRANSPORTS": " polling , websocket "}
    )
    assert both.socket_transports == ("polling", "websocket")


@pytest.mark.parametrize("value", ["carrier-pigeon", "websocket,smoke", ","])
def test_unknown_socket_transports_are_refused(tmp_path: Path, value: str) -> None:
    with pytest.raises(SettingsError, match="PARLEY_SOCKET_TRANSPORTS"):
        Settings.from_env({"PARLEY_DATA_DIR": str(tmp_path), "PARLEY_SOCKET_TRANSPORTS": value})


def test_the_agent_runs_one_storer_unless_told_more(tmp_path: Path) -> None:
    base = {"PARLEY_DATA_DIR": str(tmp_path)}
    assert Settings.from_env(base).agent_storers == 1
    assert Settings.from_env({**base, "PARLEY_AGENT_STORERS": "2"}).agent_storers == 2


@pytest.mark.parametrize("value", ["0", "-1", "9"])
def test_a_storer_count_out_of_range_is_refused(tmp_path: Path, value: str) -> None:
    with pytest.raises(SettingsError, match="PARLEY_AGENT_STORERS must be between 1 and 8"):
        Settings.from_env({"PARLEY_DATA_DIR": str(tmp_path), "PARLEY_AGENT_STORERS": value})


def test_abuse_limits_and_trusted_proxies(tmp_path: Path) -> None:
    base = {"PARLEY_DATA_DIR": str(tmp_path)}
    assert Settings.from_env(base).trusted_proxies == ()
    custom = Settings.from_env(
        {
            **base,
            "PARLEY_TRUSTED_PROXIES": "10.0.0.0/8, 192.168.1.4,::1",
            "PARLEY_CONNECT_BURST": "7",
            "PARLEY_NEW_VISITOR_LIMIT": "3",
            "PARLEY_SOCKET_EVENT_RATE": "0.5",
            "PARLEY_AGENT_RECHECK_INTERVAL": "2",
        }
    )
    assert custom.trusted_proxies == ("10.0.0.0/8", "192.168.1.4", "::1")
    assert custom.connect_burst == 7 and custom.new_visitor_limit == 3
    assert custom.socket_event_rate == 0.5 and custom.agent_recheck_interval == 2.0
    with pytest.raises(SettingsError, match="PARLEY_TRUSTED_PROXIES"):
        Settings.from_env({**base, "PARLEY_TRUSTED_PROXIES": "proxy.example"})
