"""uvicorn's websocket as the gateway runs it: no permessage-deflate, frames bounded."""

from __future__ import annotations

import asyncio
import base64
import gc
import json
import os
import uuid
from pathlib import Path

import aiohttp

from gateway.sockets import MAX_PAYLOAD
from gateway.websocket_protocol import MAX_FRAME, CompactWebSocketProtocol
from parley.settings import Settings
from persistence.directory import Project
from tests.servers import Cluster, create_topics

WAIT = 15.0  # seconds
BROWSER_DEFLATE = 15  # window bits a browser offers with permessage-deflate
MESSAGE_TOO_BIG = 1009  # the websocket close code
CLOSE_OPCODE = 0x8


async def _open(
    session: aiohttp.ClientSession, url: str, project: Project
) -> aiohttp.ClientWebSocketResponse:
    """A visitor's websocket as a browser opens it (offering permessage-deflate), connected."""
    ws = await session.ws_connect(
        url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket",
        compress=BROWSER_DEFLATE,
        max_msg_size=0,
    )
    assert (await asyncio.wait_for(ws.receive_str(), WAIT)).startswith("0")
    await ws.send_str("40" + json.dumps({"projectId": project.id, "visitorUid": str(uuid.uuid4())}))
    reply = await asyncio.wait_for(ws.receive_str(), WAIT)
    assert reply.startswith("40"), reply
    return ws


async def test_permessage_deflate_is_declined(gateway_url: str, project: Project) -> None:
    """Browsers offer it; each socket would keep a zlib compressor and decompressor."""
    async with aiohttp.ClientSession() as session:
        ws = await _open(session, gateway_url, project)
        assert ws.compress == 0  # the handshake's answer carried no extension
        await ws.close()


async def test_the_cli_gateway_declines_permessage_deflate_too(
    settings: Settings, project: Project, tmp_path: Path
) -> None:
    """``parley gateway`` passes the same websocket options as the tests' gateway."""
    await create_topics(settings)
    cluster = Cluster(settings, tmp_path)
    try:
        url = await cluster.gateway()
        async with aiohttp.ClientSession() as session:
            ws = await _open(session, url, project)
            assert ws.compress == 0
            await ws.close()
    finally:
        cluster.stop()


async def _close_code_after(url: str, frame_header: bytes) -> int:
    """Open a websocket by hand, send one frame's header only, return the server's close code."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n"
            f"Host: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
        assert head.startswith(b"HTTP/1.1 101 "), head
        writer.write(frame_header)
        await writer.drain()
        while True:  # the server's frames (unmasked): skip Engine.IO's, stop at the close
            first, second = await asyncio.wait_for(reader.readexactly(2), WAIT)
            length = second & 0x7F
            if length >= 126:
                size = 2 if length == 126 else 8
                length = int.from_bytes(await reader.readexactly(size), "big")
            payload = await reader.readexactly(length)
            if first & 0x0F == CLOSE_OPCODE:
                return int.from_bytes(payload[:2], "big")
    finally:
        writer.close()


async def test_a_frame_larger_than_any_packet_is_refused_by_the_websocket(
    gateway_url: str,
) -> None:
    """Refused from the frame's header, before the gateway buffers it for Engine.IO."""
    # A masked text frame announcing MAX_FRAME + 1 bytes (64-bit length); none follow.
    header = bytes([0x81, 0x80 | 127]) + (MAX_FRAME + 1).to_bytes(8, "big") + os.urandom(4)
    assert await _close_code_after(gateway_url, header) == MESSAGE_TOO_BIG


async def test_the_largest_packets_still_reach_the_handlers(
    gateway_url: str, project: Project
) -> None:
    """A packet just under MAX_PAYLOAD characters of two UTF-8 bytes each: twice as many bytes."""
    async with aiohttp.ClientSession() as session:
        ws = await _open(session, gateway_url, project)
        event = ["sendMessage", {"content": "é" * (MAX_PAYLOAD - 1_000), "tempId": "t"}]
        packet = "421" + json.dumps(event, ensure_ascii=False)
        assert len(packet) <= MAX_PAYLOAD < len(packet.encode())
        await ws.send_str(packet)
        while (reply := await asyncio.wait_for(ws.receive_str(), WAIT)) == "2":
            await ws.send_str("3")
        assert reply.startswith("431["), reply[:200]
        [ack] = json.loads(reply[3:])
        # The handler read it, and refused it for its length: the frame was not cut.
        assert ack["ok"] is False and ack["error"]["code"] == "invalid_payload", ack
        assert "longer than" in ack["error"]["message"]
        await ws.close()


async def test_an_open_sockets_protocol_keeps_its_attributes_in_slots(
    gateway_url: str, project: Project
) -> None:
    """Every attribute uvicorn set on the connection went into a slot: no instance dict.

    If uvicorn adds an attribute, it lands in the dict and this names it: add it
    to UVICORN_ATTRIBUTES.
    """
    async with aiohttp.ClientSession() as session:
        ws = await _open(session, gateway_url, project)
        [protocol] = [o for o in gc.get_objects() if type(o) is CompactWebSocketProtocol]
        assert vars(protocol) == {}
        assert protocol.scope["type"] == "websocket"  # read back from its slot
        await ws.close()
