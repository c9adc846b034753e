"""One typed settings object, read once from the environment and passed down.

Every process (gateway, relay, Faust worker, CLI) calls :meth:`Settings.from_env`
exactly once at start-up; nothing else in Parley reads ``os.environ``.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import secrets
from collections.abc import Mapping
from pathlib import Path

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_DATA_DIR = ".parley"
DEFAULT_TOPIC_PREFIX = "parley."
DEFAULT_EVENTS_CHANNEL = "parley:events"
DEFAULT_WORKER_ID = "parley-worker"
DEFAULT_TOPIC_PARTITIONS = 8
DEFAULT_TOPIC_REPLICATION = 1  # 3 on a production Redpanda cluster
DEFAULT_RATE_LIMIT_COUNT = 30  # messages per window
DEFAULT_RATE_LIMIT_WINDOW = 60.0  # seconds
# Redpanda and Kafka answer a fetch long-poll as soon as data arrives, so a long
# wait costs nothing there; the embedded Tansu broker does not, so `parley run`
# and the tests set PARLEY_KAFKA_FETCH_WAIT_MS=5 for it.
DEFAULT_FETCH_WAIT = 500  # milliseconds
# The consumer switches to this wait once no record arrived for a while; 0 keeps
# DEFAULT_FETCH_WAIT always. `parley run` sets it for Tansu so an idle worker
# does not poll 200 times a second.
DEFAULT_FETCH_IDLE_WAIT = 0  # milliseconds
# Reads from the embedded broker slow down with the batches in a partition, so
# `parley run` restarts it empty once a partition holds this many records.
DEFAULT_BROKER_RECYCLE_RECORDS = 3_000
# Seconds before the group evicts a silent worker. A group coordinator may hold a
# new member's join for part of it (Tansu holds half), so `parley run` shortens it.
DEFAULT_SESSION_TIMEOUT = 10.0
DEFAULT_TOKEN_TTL = 30 * 24 * 3600  # seconds
# A crashed gateway's visitors are marked offline about this long after it died.
# Seconds a gateway's heartbeat lives without a refresh. With a sweep every second
# at most, a crashed gateway's visitors are offline within TTL + 1 s: under 30 s.
DEFAULT_PRESENCE_TTL = 25.0
DEFAULT_TYPING_TIMEOUT = 5.0  # seconds a typing flag lasts without an update
DEFAULT_RELAY_POLL_INTERVAL = 1.0  # seconds
DEFAULT_RELAY_BATCH_SIZE = 1000  # outbox rows per claim
# Transactions the persistence agent runs at once, each over its own share of the
# partitions. Two drain a preloaded backlog about 30 % faster; under live traffic
# they halve each transaction and cost about a fifth more CPU per message across
# the worker, PostgreSQL, the relay and the broker (docs/performance.md), so one.
DEFAULT_AGENT_STORERS = 1
MAX_AGENT_STORERS = 8  # at most one per partition of the default topic
DEFAULT_RELAY_MAX_ATTEMPTS = 5  # publish failures before a row is parked
# Seven days is enough to replay a worker's outage; the dead-letter topic keeps
# events long enough for someone to notice, fix and replay them.
DEFAULT_TOPIC_RETENTION_HOURS = 7 * 24
DEFAULT_DEAD_LETTER_RETENTION_HOURS = 30 * 24
# Abuse limits (issue 7). Per client address and per socket ones are kept in each
# gateway's memory; new visitors are counted in Redis, shared by the gateways.
DEFAULT_CONNECT_BURST = 60  # connects an address may make at once
DEFAULT_CONNECT_RATE = 2.0  # connects per second an address regains
DEFAULT_MAX_SOCKETS_PER_ADDRESS = 100  # open sockets per address per gateway
DEFAULT_NEW_VISITOR_LIMIT = 20  # distinct visitor uids per address per project per window
DEFAULT_NEW_VISITOR_WINDOW = 600.0  # seconds
DEFAULT_SOCKET_EVENT_BURST = 60.0  # event cost units a socket may spend at once
DEFAULT_SOCKET_EVENT_RATE = 10.0  # cost units per second a socket regains
DEFAULT_CONTEXT_UPDATES_PER_MINUTE = 10  # stored page changes per visitor socket
DEFAULT_AGENT_RECHECK_INTERVAL = 30.0  # seconds between re-checks of connected agents
SECRET_FILE = "secret.key"
SOCKET_TRANSPORTS = ("polling", "websocket")  # what Engine.IO offers
# Long-polling spreads one session over many HTTP requests, which must all reach the
# same gateway (sticky sessions); the widget and dashboard only use websocket.
DEFAULT_SOCKET_TRANSPORTS = ("websocket",)
MIN_SECRET_BYTES = 32  # HMAC-SHA256 keys shorter than its block of output are guessable


class SettingsError(Exception):
    """A setting is missing or malformed."""


class Secret:
    """A string that never shows itself in a repr, a log line or a traceback."""

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and secrets.compare_digest(self._value, other._value)

    def __hash__(self) -> int:
        return hash(self._value)


def _int(env: Mapping[str, str], key: str, default: int) -> int:
    raw = env.get(key)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise SettingsError(f"{key} must be an integer, got {raw!r}") from None


def _float(env: Mapping[str, str], key: str, default: float) -> float:
    raw = env.get(key)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise SettingsError(f"{key} must be a number, got {raw!r}") from None


def _storers(env: Mapping[str, str]) -> int:
    storers = _int(env, "PARLEY_AGENT_STORERS", DEFAULT_AGENT_STORERS)
    if not 1 <= storers <= MAX_AGENT_STORERS:
        raise SettingsError(
            f"PARLEY_AGENT_STORERS must be between 1 and {MAX_AGENT_STORERS}, got {storers}"
        )
    return storers


def _optional(env: Mapping[str, str], key: str) -> str | None:
    value = env.get(key, "").strip()
    return value or None


def _strong(value: str, source: str) -> Secret:
    if len(value.encode()) < MIN_SECRET_BYTES:
        raise SettingsError(
            f"{source} is {'empty' if not value else 'too short'}: it must be at least "
            f"{MIN_SECRET_BYTES} bytes; generate one with "
            "python3 -c 'import secrets; print(secrets.token_urlsafe(48))'"
        )
    return Secret(value)


def _transports(env: Mapping[str, str]) -> tuple[str, ...]:
    raw = env.get("PARLEY_SOCKET_TRANSPORTS")
    if raw is None or not raw.strip():
        return DEFAULT_SOCKET_TRANSPORTS
    names = tuple(name.strip() for name in raw.split(","))
    if not all(name in SOCKET_TRANSPORTS for name in names):
        raise SettingsError(
            f"PARLEY_SOCKET_TRANSPORTS must list {' and/or '.join(SOCKET_TRANSPORTS)}, "
            f"comma-separated; got {raw!r}"
        )
    return tuple(dict.fromkeys(names))


def _networks(env: Mapping[str, str], key: str) -> tuple[str, ...]:
    entries = tuple(part.strip() for part in env.get(key, "").split(",") if part.strip())
    for entry in entries:
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise SettingsError(f"{key}: {entry!r} is not an IP address or network") from None
    return entries


def load_secret(env: Mapping[str, str], data_dir: Path) -> Secret:
    """PARLEY_SECRET, or a generated development key kept under the data folder.

    A PARLEY_SECRET that is set must be strong, even when empty: an empty value
    usually means a deployment forgot to pass it, and falling back to a per-process
    key would make every process sign tokens the others refuse.
    """
    if "PARLEY_SECRET" in env:
        return _strong(env["PARLEY_SECRET"].strip(), "PARLEY_SECRET")
    path = data_dir / SECRET_FILE
    if path.exists():
        return _strong(path.read_text().strip(), str(path))
    data_dir.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(48)
    # Written whole under a private name, then linked into place: two processes
    # starting at once agree on one key, and neither can read a half-written file.
    draft = data_dir / f".{SECRET_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(value)
        os.link(draft, path)
    except FileExistsError:
        return _strong(path.read_text().strip(), str(path))
    finally:
        draft.unlink(missing_ok=True)
    return Secret(value)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Settings:
    """Everything Parley reads from its environment.

    A URL left as ``None`` means "not configured": ``parley run`` and the tests
    start an embedded service for it; the gateway, relay and worker refuse to
    start without it.
    """

    database_url: str | None = None
    redis_url: str | None = None
    kafka_bootstrap_servers: str | None = None
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    secret: Secret = dataclasses.field(default_factory=lambda: Secret(secrets.token_urlsafe(48)))
    data_dir: Path = Path(DEFAULT_DATA_DIR)
    topic_prefix: str = DEFAULT_TOPIC_PREFIX
    events_channel: str = DEFAULT_EVENTS_CHANNEL
    worker_id: str = DEFAULT_WORKER_ID
    topic_partitions: int = DEFAULT_TOPIC_PARTITIONS
    topic_replication: int = DEFAULT_TOPIC_REPLICATION
    fetch_wait_ms: int = DEFAULT_FETCH_WAIT
    fetch_idle_wait_ms: int = DEFAULT_FETCH_IDLE_WAIT
    broker_recycle_records: int = DEFAULT_BROKER_RECYCLE_RECORDS
    session_timeout: float = DEFAULT_SESSION_TIMEOUT
    rate_limit_count: int = DEFAULT_RATE_LIMIT_COUNT
    rate_limit_window: float = DEFAULT_RATE_LIMIT_WINDOW
    token_ttl: int = DEFAULT_TOKEN_TTL
    presence_ttl: float = DEFAULT_PRESENCE_TTL
    typing_timeout: float = DEFAULT_TYPING_TIMEOUT
    relay_poll_interval: float = DEFAULT_RELAY_POLL_INTERVAL
    relay_batch_size: int = DEFAULT_RELAY_BATCH_SIZE
    agent_storers: int = DEFAULT_AGENT_STORERS
    relay_max_attempts: int = DEFAULT_RELAY_MAX_ATTEMPTS
    socket_transports: tuple[str, ...] = DEFAULT_SOCKET_TRANSPORTS
    relay_metrics_port: int | None = None
    worker_metrics_port: int | None = None
    trusted_proxies: tuple[str, ...] = ()
    connect_burst: int = DEFAULT_CONNECT_BURST
    connect_rate: float = DEFAULT_CONNECT_RATE
    max_sockets_per_address: int = DEFAULT_MAX_SOCKETS_PER_ADDRESS
    new_visitor_limit: int = DEFAULT_NEW_VISITOR_LIMIT
    new_visitor_window: float = DEFAULT_NEW_VISITOR_WINDOW
    socket_event_burst: float = DEFAULT_SOCKET_EVENT_BURST
    socket_event_rate: float = DEFAULT_SOCKET_EVENT_RATE
    context_updates_per_minute: int = DEFAULT_CONTEXT_UPDATES_PER_MINUTE
    agent_recheck_interval: float = DEFAULT_AGENT_RECHECK_INTERVAL
    log_level: str = "INFO"
    topic_retention_hours: int = DEFAULT_TOPIC_RETENTION_HOURS
    dead_letter_retention_hours: int = DEFAULT_DEAD_LETTER_RETENTION_HOURS
    # Kafka client security (streams/security.py checks the combination).
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_ca_file: str | None = None
    kafka_cert_file: str | None = None
    kafka_key_file: str | None = None
    kafka_sasl_mechanism: str | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: Secret | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        data_dir = Path(env.get("PARLEY_DATA_DIR") or DEFAULT_DATA_DIR)
        return cls(
            database_url=_optional(env, "DATABASE_URL"),
            redis_url=_optional(env, "REDIS_URL"),
            kafka_bootstrap_servers=_optional(env, "KAFKA_BOOTSTRAP_SERVERS"),
            host=env.get("PARLEY_HOST") or DEFAULT_HOST,
            port=_int(env, "PARLEY_PORT", DEFAULT_PORT),
            secret=load_secret(env, data_dir),
            data_dir=data_dir,
            topic_prefix=env.get("PARLEY_TOPIC_PREFIX") or DEFAULT_TOPIC_PREFIX,
            events_channel=env.get("PARLEY_EVENTS_CHANNEL") or DEFAULT_EVENTS_CHANNEL,
            worker_id=env.get("PARLEY_WORKER_ID") or DEFAULT_WORKER_ID,
            topic_partitions=_int(env, "PARLEY_TOPIC_PARTITIONS", DEFAULT_TOPIC_PARTITIONS),
            topic_replication=_int(env, "PARLEY_TOPIC_REPLICATION", DEFAULT_TOPIC_REPLICATION),
            fetch_wait_ms=_int(env, "PARLEY_KAFKA_FETCH_WAIT_MS", DEFAULT_FETCH_WAIT),
            fetch_idle_wait_ms=_int(
                env, "PARLEY_KAFKA_FETCH_IDLE_WAIT_MS", DEFAULT_FETCH_IDLE_WAIT
            ),
            session_timeout=_float(env, "PARLEY_KAFKA_SESSION_TIMEOUT", DEFAULT_SESSION_TIMEOUT),
            broker_recycle_records=_int(
                env, "PARLEY_BROKER_RECYCLE_RECORDS", DEFAULT_BROKER_RECYCLE_RECORDS
            ),
            rate_limit_count=_int(env, "PARLEY_RATE_LIMIT_COUNT", DEFAULT_RATE_LIMIT_COUNT),
            rate_limit_window=_float(env, "PARLEY_RATE_LIMIT_WINDOW", DEFAULT_RATE_LIMIT_WINDOW),
            token_ttl=_int(env, "PARLEY_TOKEN_TTL", DEFAULT_TOKEN_TTL),
            presence_ttl=_float(env, "PARLEY_PRESENCE_TTL", DEFAULT_PRESENCE_TTL),
            typing_timeout=_float(env, "PARLEY_TYPING_TIMEOUT", DEFAULT_TYPING_TIMEOUT),
            relay_poll_interval=_float(
                env, "PARLEY_RELAY_POLL_INTERVAL", DEFAULT_RELAY_POLL_INTERVAL
            ),
            relay_batch_size=_int(env, "PARLEY_RELAY_BATCH_SIZE", DEFAULT_RELAY_BATCH_SIZE),
            agent_storers=_storers(env),
            relay_max_attempts=_int(env, "PARLEY_RELAY_MAX_ATTEMPTS", DEFAULT_RELAY_MAX_ATTEMPTS),
            socket_transports=_transports(env),
            relay_metrics_port=_int(env, "PARLEY_RELAY_METRICS_PORT", 0) or None,
            worker_metrics_port=_int(env, "PARLEY_WORKER_METRICS_PORT", 0) or None,
            trusted_proxies=_networks(env, "PARLEY_TRUSTED_PROXIES"),
            connect_burst=_int(env, "PARLEY_CONNECT_BURST", DEFAULT_CONNECT_BURST),
            connect_rate=_float(env, "PARLEY_CONNECT_RATE", DEFAULT_CONNECT_RATE),
            max_sockets_per_address=_int(
                env, "PARLEY_MAX_SOCKETS_PER_ADDRESS", DEFAULT_MAX_SOCKETS_PER_ADDRESS
            ),
            new_visitor_limit=_int(env, "PARLEY_NEW_VISITOR_LIMIT", DEFAULT_NEW_VISITOR_LIMIT),
            new_visitor_window=_float(env, "PARLEY_NEW_VISITOR_WINDOW", DEFAULT_NEW_VISITOR_WINDOW),
            socket_event_burst=_float(env, "PARLEY_SOCKET_EVENT_BURST", DEFAULT_SOCKET_EVENT_BURST),
            socket_event_rate=_float(env, "PARLEY_SOCKET_EVENT_RATE", DEFAULT_SOCKET_EVENT_RATE),
            context_updates_per_minute=_int(
                env, "PARLEY_CONTEXT_UPDATES_PER_MINUTE", DEFAULT_CONTEXT_UPDATES_PER_MINUTE
            ),
            agent_recheck_interval=_float(
                env, "PARLEY_AGENT_RECHECK_INTERVAL", DEFAULT_AGENT_RECHECK_INTERVAL
            ),
            log_level=(env.get("PARLEY_LOG_LEVEL") or "INFO").upper(),
            topic_retention_hours=_int(
                env, "PARLEY_TOPIC_RETENTION_HOURS", DEFAULT_TOPIC_RETENTION_HOURS
            ),
            dead_letter_retention_hours=_int(
                env, "PARLEY_DEAD_LETTER_RETENTION_HOURS", DEFAULT_DEAD_LETTER_RETENTION_HOURS
            ),
            kafka_security_protocol=(
                env.get("PARLEY_KAFKA_SECURITY_PROTOCOL") or "PLAINTEXT"
            ).upper(),
            kafka_ca_file=_optional(env, "PARLEY_KAFKA_CA_FILE"),
            kafka_cert_file=_optional(env, "PARLEY_KAFKA_CERT_FILE"),
            kafka_key_file=_optional(env, "PARLEY_KAFKA_KEY_FILE"),
            kafka_sasl_mechanism=(_optional(env, "PARLEY_KAFKA_SASL_MECHANISM") or "").upper()
            or None,
            kafka_sasl_username=_optional(env, "PARLEY_KAFKA_SASL_USERNAME"),
            kafka_sasl_password=(
                Secret(password)
                if (password := _optional(env, "PARLEY_KAFKA_SASL_PASSWORD"))
                else None
            ),
        )

    def replace(self, **changes: object) -> Settings:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    def require(self, *names: str) -> None:
        """Fail with one sentence when a service URL this process needs is unset."""
        env_names = {
            "database_url": "DATABASE_URL",
            "redis_url": "REDIS_URL",
            "kafka_bootstrap_servers": "KAFKA_BOOTSTRAP_SERVERS",
        }
        for name in names:
            if getattr(self, name) is None:
                raise SettingsError(
                    f"{env_names[name]} is not set: point it at the service, "
                    "or use `make run`, which starts embedded services."
                )

    @property
    def visitor_topic(self) -> str:
        return f"{self.topic_prefix}visitor-messages"

    @property
    def agent_topic(self) -> str:
        return f"{self.topic_prefix}agent-messages"

    @property
    def dead_letter_topic(self) -> str:
        return f"{self.topic_prefix}visitor-messages.dead-letter"

    @property
    def sqlalchemy_url(self) -> str:
        """DATABASE_URL in the form SQLAlchemy's asyncpg dialect wants."""
        self.require("database_url")
        assert self.database_url is not None
        return to_asyncpg_url(self.database_url)


def to_asyncpg_url(url: str) -> str:
    for prefix in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    raise SettingsError(f"DATABASE_URL must be a postgresql:// URL, got scheme of {url[:12]!r}")


def to_plain_url(url: str) -> str:
    """DATABASE_URL in the libpq form (asyncpg.connect, psql)."""
    return to_asyncpg_url(url).replace("postgresql+asyncpg://", "postgresql://", 1)
