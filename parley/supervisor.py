"""The child processes of ``parley run``: started, watched, restarted, stopped in order.

Each child runs in its own session, so Ctrl-C reaches only ``parley run``, which
then stops them one by one in the order that loses nothing. Their output is passed
through line by line with the child's name in front. A child that exits on its own
is started again with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import time
from collections.abc import Callable, Mapping
from typing import TextIO

logger = logging.getLogger("parley.supervisor")

STOP_TIMEOUT = 15.0  # seconds a child has to exit after SIGTERM
RESTART_BACKOFF = (1.0, 2.0, 5.0, 10.0, 30.0)  # seconds before each further restart
STABLE_AFTER = 60.0  # seconds of uptime after which the backoff starts over


class Child:
    """One supervised child process."""

    def __init__(
        self,
        *,
        name: str,
        command: list[str],
        env: Mapping[str, str],
        output: TextIO | None = None,
        name_width: int = 8,
        on_spawn: Callable[[], None] | None = None,
    ) -> None:
        self.name = name
        self.command = command
        self.env = dict(env)
        self._output = output or sys.stdout
        self._prefix = f"{name:<{name_width}} | "
        self._process: asyncio.subprocess.Process | None = None
        self._pump: asyncio.Task[None] | None = None
        self._watch: asyncio.Task[None] | None = None
        self._wanted = False
        self._failures = 0
        self._on_spawn = on_spawn
        self.restarts = 0

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    async def start(self) -> None:
        self._wanted = True
        await self._spawn()
        if self._watch is None or self._watch.done():
            self._watch = asyncio.create_task(self._watch_loop(), name=f"watch-{self.name}")

    async def _spawn(self) -> None:
        self._process = await asyncio.create_subprocess_exec(
            *self.command,
            env=self.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
        self._pump = asyncio.create_task(self._pump_output(self._process), name=f"out-{self.name}")
        self._started_at = time.monotonic()
        if self._on_spawn is not None:
            self._on_spawn()

    async def _pump_output(self, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        async for line in process.stdout:
            text = line.decode(errors="replace").rstrip("\n")
            stamp = time.strftime("%H:%M:%S")
            print(f"{stamp} {self._prefix}{text}", file=self._output, flush=True)

    async def _watch_loop(self) -> None:
        while self._wanted:
            process = self._process
            assert process is not None
            code = await process.wait()
            if self._pump is not None:
                with contextlib.suppress(Exception):
                    await self._pump
            if not self._wanted or process is not self._process:
                if process is not self._process:
                    continue
                return
            if time.monotonic() - self._started_at > STABLE_AFTER:
                self._failures = 0
            delay = RESTART_BACKOFF[min(self._failures, len(RESTART_BACKOFF) - 1)]
            self._failures += 1
            logger.warning(
                "%s exited with code %s; starting it again in %.0f s",
                self.name,
                code,
                delay,
                extra={"action": "supervisor.restart", "child": self.name},
            )
            await asyncio.sleep(delay)
            if self._wanted:
                self.restarts += 1
                await self._spawn()

    def send(self, sig: int) -> None:
        if self._process is not None and self._process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._process.send_signal(sig)

    def pause(self) -> None:
        """Freeze the process: it sends nothing until :meth:`resume`."""
        self.send(signal.SIGSTOP)

    def resume(self) -> None:
        self.send(signal.SIGCONT)

    async def stop(self, *, grace: float = STOP_TIMEOUT, sig: int = signal.SIGTERM) -> None:
        """Stop the child and do not start it again (until :meth:`start`)."""
        self._wanted = False
        process = self._process
        if process is not None and process.returncode is None:
            self.resume()
            self.send(sig)
            try:
                await asyncio.wait_for(process.wait(), grace)
            except TimeoutError:
                logger.warning(
                    "%s did not stop within %.0f s; killing it",
                    self.name,
                    grace,
                    extra={"action": "supervisor.kill", "child": self.name},
                )
                self.send(signal.SIGKILL)
                await process.wait()
        for task in (self._watch, self._pump):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._watch = None

    async def kill(self) -> None:
        await self.stop(sig=signal.SIGKILL)
