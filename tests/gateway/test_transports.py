"""Socket.IO transports: websocket only unless PARLEY_SOCKET_TRANSPORTS adds long-polling."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
import socketio

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


async def test_binary_attachments_get_a_clear_error(gateway_url: str, project: Project) -> None:
    visitor = await clients.visitor(gateway_url, project.id, str(uuid.uuid4()))
    ack = await visitor.call("sendMessage", {"content": b"\x00\xff", "tempId": str(uuid.uuid4())})
    assert ack["ok"] is False and ack["error"]["code"] == "invalid_payload", ack
    ok = await visitor.call("sendMessage", {"content": "hi", "tempId": str(uuid.uuid4())})
    assert ok == {"ok": True}
    await visitor.close()


async def test_attachments_cannot_add_up_past_the_packet_limit(
    gateway_url: str, project: Project
) -> None:
    """Each attachment is its own frame, under 1 MB; together they must not pass it."""
    visitor = await clients.visitor(gateway_url, project.id, str(uuid.uuid4()))
    parts = {f"part{i}": bytes(600_000) for i in range(3)}
    with pytest.raises(socketio.exceptions.TimeoutError):
        await visitor.call("sendMessage", {"content": "x", "tempId": "t", **parts}, timeout=5)
    deadline = asyncio.get_running_loop().time() + 5
    while visitor.client.connected:
        assert asyncio.get_running_loop().time() < deadline, "the socket was not closed"
        await asyncio.sleep(0.05)
    # Others are still served.
    other = await clients.visitor(gateway_url, project.id, str(uuid.uuid4()))
    ok = await other.call("sendMessage", {"content": "hi", "tempId": str(uuid.uuid4())})
    assert ok == {"ok": True}
    await other.close()


async def test_a_huge_attachment_count_closes_the_socket(
    gateway_url: str, project: Project
) -> None:
    visitor = await clients.visitor(gateway_url, project.id, str(uuid.uuid4()))
    # A BINARY_EVENT header announcing 999999 attachments, then a few of them.
    eio = visitor.client.eio
    await eio.send('5999999-["sendMessage",{"_placeholder":true,"num":0}]')
    for _ in range(3):
        await eio.send(bytes(10))
    deadline = asyncio.get_running_loop().time() + 5
    while visitor.client.connected:
        assert asyncio.get_running_loop().time() < deadline, "the socket was not closed"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize(
    "packet",
    [
        '27["sendMessage",' + "[" * 300_000 + "]" * 300_000 + "]",
        '28["sendMessage",{"content": "hi",',
        '29["sendMessage",NaN,]',
    ],
    ids=["deeply-nested", "truncated", "malformed"],
)
async def test_an_undecodable_event_is_answered(
    gateway_url: str, project: Project, packet: str
) -> None:
    """JSON too deep for the decoder, or not JSON: the ack says so and the socket serves on."""
    visitor = await clients.visitor(gateway_url, project.id, str(uuid.uuid4()))
    answered: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    packet_id = int(packet[1])  # Engine.IO adds the message type "4" in front
    # The identify call registered this namespace's callbacks; ids 7-9 are still unused.
    visitor.client.callbacks["/"][packet_id] = answered.set_result
    await visitor.client.eio.send(packet)
    async with asyncio.timeout(5):
        ack = await answered
    assert ack["ok"] is False and ack["error"]["code"] == "invalid_payload", ack
    ok = await visitor.call("sendMessage", {"content": "hi", "tempId": str(uuid.uuid4())})
    assert ok == {"ok": True}
    await visitor.close()
