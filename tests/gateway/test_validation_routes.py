"""Bad input against a real gateway: every call answered with a clear error, never a 500 or
silence, and the socket or route keeps working afterwards."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from persistence.directory import Project
from tests import clients

ACK_TIMEOUT = 5.0  # seconds; a missing ack fails the test instead of hanging it


def message(content: object = "hello", **extra: object) -> dict[str, object]:
    return {"content": content, "tempId": str(uuid.uuid4()), **extra}


def forge_cursor(body: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(body).encode()).rstrip(b"=").decode()


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"]["code"] == code, body
    assert body["error"]["message"]


def assert_refused(ack: Any, code: str = "invalid_payload") -> None:
    assert isinstance(ack, dict) and ack.get("ok") is False, ack
    assert ack["error"]["code"] == code, ack
    assert ack["error"]["message"]


async def test_superscript_project_id_is_a_400_on_every_route(
    gateway_url: str, agent_token: str
) -> None:
    headers = {"Authorization": f"Bearer {agent_token}"}
    async with httpx.AsyncClient(base_url=gateway_url, headers=headers, timeout=15) as api:
        base = "/api/projects/²"
        post = await api.post(f"{base}/conversations/1/messages", json=message())
        assert_error(post, 400, "invalid_payload")
        for path in (f"{base}/conversations", f"{base}/sync", f"{base}/visitors/v"):
            assert_error(await api.get(path), 400, "invalid_payload")
        assert_error(
            await api.patch(f"{base}/conversations/1", json={"read": True}), 400, "invalid_payload"
        )
        bad_id = "/api/projects/1/conversations/١٢/messages"
        assert_error(await api.post(bad_id, json=message()), 400, "invalid_payload")
        assert_error(await api.get(bad_id), 400, "invalid_payload")


async def test_superscript_project_id_at_connect_is_refused(gateway_url: str) -> None:
    error = await clients.refused(f"{gateway_url}?projectId=²")
    assert error["code"] == "invalid_payload"
    error = await clients.refused(gateway_url, auth={"projectId": "²"})
    assert error["code"] == "invalid_payload"


async def test_superscript_project_id_in_events_is_acked(
    gateway_url: str, project: Project, agent_token: str
) -> None:
    visitor = await clients.visitor(gateway_url, project.id, None)
    ack = await visitor.call(
        "identify", {"projectId": "²", "visitorUid": str(uuid.uuid4())}, timeout=ACK_TIMEOUT
    )
    assert_refused(ack)
    dashboard = await clients.dashboard(gateway_url, agent_token)
    joined = await dashboard.call("joinProjectRoom", {"projectId": "²"}, timeout=ACK_TIMEOUT)
    assert joined["status"] == "error" and joined["message"]
    assert_refused(await dashboard.call("sync", {"projectId": "²"}, timeout=ACK_TIMEOUT))
    # Both sockets still serve.
    assert (await dashboard.call("sync", {"projectId": project.id}, timeout=ACK_TIMEOUT))["cursor"]
    await visitor.close()
    await dashboard.close()


async def test_non_ascii_bearer_token_is_401_on_every_route(
    gateway_url: str, project: Project
) -> None:
    # httpx refuses to send non-ASCII header text, so send the bytes latin-1 encoded.
    headers = {"Authorization": "Bearer a.ÿ".encode("latin-1")}
    base = f"/api/projects/{project.id}"
    async with httpx.AsyncClient(base_url=gateway_url, timeout=15) as api:
        for method, path in [
            ("GET", f"{base}/conversations"),
            ("PATCH", f"{base}/conversations/1"),
            ("GET", f"{base}/conversations/1/messages"),
            ("POST", f"{base}/conversations/1/messages"),
            ("GET", f"{base}/visitors/v"),
            ("GET", f"{base}/sync"),
        ]:
            response = await api.request(method, path, headers=headers, json={"read": True})
            assert_error(response, 401, "invalid_token")
    error = await clients.refused(gateway_url, auth={"token": "a.\ud800"})
    assert error["code"] == "invalid_token"


@pytest.mark.parametrize(
    "payload",
    [
        message("lone \ud83d surrogate"),
        message("poison\x00pill"),
        message(sessionMetadata={"urlHistory": [{"url": "https://a.test", "title": "\x00"}]}),
        message(sessionMetadata={"urlHistory": [{"url": "https://a.test", "timestamp": 2**64}]}),
        message(extra={"nested": "\udfff"}),
    ],
)
async def test_send_message_refuses_what_postgresql_cannot_store(
    gateway_url: str, project: Project, payload: dict[str, Any]
) -> None:
    visitor = await clients.visitor(gateway_url, project.id, str(uuid.uuid4()))
    assert_refused(await visitor.call("sendMessage", payload, timeout=ACK_TIMEOUT))
    assert (await visitor.call("sendMessage", message(), timeout=ACK_TIMEOUT))["ok"] is True
    await visitor.close()


async def test_update_context_refuses_nul(gateway_url: str, project: Project) -> None:
    visitor = await clients.visitor(gateway_url, project.id, str(uuid.uuid4()))
    for body in (
        {"currentUrl": "https://a.test/\x00"},
        {"currentUrl": "https://a.test/", "currentTitle": "t\x00"},
        {"currentUrl": "https://a.test/\ud800"},
    ):
        assert_refused(await visitor.call("updateContext", body, timeout=ACK_TIMEOUT))
    ok = await visitor.call("updateContext", {"currentUrl": "https://a.test/"}, timeout=ACK_TIMEOUT)
    assert ok["ok"] is True
    await visitor.close()


async def test_forged_page_cursors_are_400(
    gateway_url: str, project: Project, agent_token: str
) -> None:
    headers = {"Authorization": f"Bearer {agent_token}"}
    url = f"/api/projects/{project.id}/conversations"
    async with httpx.AsyncClient(base_url=gateway_url, headers=headers, timeout=15) as api:
        for body in (
            {"k": "page", "u": "2024-01-01T00:00:00+00:00", "i": 2**64},
            {"k": "page", "u": "0001-01-01T00:00:00+05:00", "i": 1},
            {"k": "page", "u": "9999-12-31T23:59:59-05:00", "i": 1},
        ):
            response = await api.get(url, params={"cursor": forge_cursor(body)})
            assert_error(response, 400, "invalid_payload")
        since = forge_cursor({"k": "sync", "s": "0001-01-01T00:00:00+05:00"})
        sync = await api.get(f"/api/projects/{project.id}/sync", params={"since": since})
        assert_error(sync, 400, "invalid_payload")
        assert (await api.get(url)).status_code == 200


async def _raw_request(url: str, head: str, chunks: list[bytes]) -> tuple[int, dict[str, Any]]:
    """Send a request head and some body, then wait for the answer without finishing the body."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        writer.write(head.encode("latin-1"))
        for chunk in chunks:
            writer.write(chunk)
        await writer.drain()
        async with asyncio.timeout(ACK_TIMEOUT):
            status_line = await reader.readline()
            response_headers: dict[str, str] = {}
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                response_headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(response_headers["content-length"]))
    finally:
        writer.close()
    return int(status_line.split()[1]), json.loads(body)


@pytest.mark.parametrize("path", ["conversations/1", "conversations/1/messages"])
async def test_bodies_are_read_with_a_limit(
    gateway_url: str, project: Project, agent_token: str, path: str
) -> None:
    method = "PATCH" if path == "conversations/1" else "POST"
    target = f"/api/projects/{project.id}/{path}"
    common = f"Host: x\r\nAuthorization: Bearer {agent_token}\r\nContent-Type: application/json\r\n"
    # A declared length over the limit is refused before any of the body is read.
    status, body = await _raw_request(
        gateway_url, f"{method} {target} HTTP/1.1\r\n{common}Content-Length: 100000000\r\n\r\n", []
    )
    assert status == 413 and body["error"]["code"] == "payload_too_large", body
    # A chunked body is refused once it passes the limit, although it never ends.
    chunk = b" " * 16_384
    framed = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    status, body = await _raw_request(
        gateway_url,
        f"{method} {target} HTTP/1.1\r\n{common}Transfer-Encoding: chunked\r\n\r\n",
        [framed] * 8,
    )
    assert status == 413 and body["error"]["code"] == "payload_too_large", body
    async with httpx.AsyncClient(base_url=gateway_url, timeout=15) as api:
        ok = await api.get(
            f"/api/projects/{project.id}/conversations",
            headers={"Authorization": f"Bearer {agent_token}"},
        )
        assert ok.status_code == 200
