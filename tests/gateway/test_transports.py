"""Socket.IO transports: websocket only unless PARLEY_SOCKET_TRANSPORTS adds long-polling."""

from __future__ import annotations

import httpx

from parley.settings import Settings
from persistence.directory import Project
from tests import clients
from tests.servers import gateway_in_process

HANDSHAKE = "/socket.io/?EIO=4&transport=polling"


async def test_long_polling_is_off_by_default(gateway_url: str, project: Project) -> None:
    async with httpx.AsyncClient(base_url=gateway_url, timeout=10) as http:
        refused = await http.get(HANDSHAKE)
        assert refused.status_code == 400, refused.text
    # websocket still connects.
    visitor = await clients.visitor(gateway_url, project.id, None)
    await visitor.close()


async def test_long_polling_can_be_turned_on(settings: Settings) -> None:
    async with (
        gateway_in_process(settings.replace(socket_transports=("polling", "websocket"))) as url,
        httpx.AsyncClient(base_url=url, timeout=10) as http,
    ):
        opened = await http.get(HANDSHAKE)
        assert opened.status_code == 200, opened.text
        assert '"sid"' in opened.text
