"""The dashboard HTTP API and the ``sync`` socket event, against the real services."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.tokens import TokenSigner
from parley.embedded import free_port
from parley.settings import Settings
from persistence.catchup import SYNC_MAX_CONVERSATIONS, SYNC_MAX_MESSAGES
from persistence.directory import Directory, Project
from persistence.models import conversations, outbox
from persistence.store import MessageStore
from tests import clients
from tests.factories import incoming, uid
from tests.servers import gateway_in_process


@pytest.fixture
async def api(gateway_url: str, agent_token: str) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {agent_token}"}
    async with httpx.AsyncClient(base_url=gateway_url, headers=headers, timeout=15) as client:
        yield client


@pytest.fixture
def store(engine: AsyncEngine) -> MessageStore:
    return MessageStore(engine=engine)


async def seed(store: MessageStore, project_id: int, visitor: str, count: int = 1) -> int:
    result = await store.append([incoming(project_id, visitor, f"m{i}") for i in range(count)])
    return int(result.stored[-1]["conversationId"])


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"]["code"] == code, body
    assert body["error"]["message"]


async def test_conversations_page_newest_first_with_a_cursor(
    api: httpx.AsyncClient, store: MessageStore, project: Project
) -> None:
    ids = [await seed(store, project.id, uid()) for _ in range(5)]
    url = f"/api/projects/{project.id}/conversations"

    seen: list[int] = []
    params: dict[str, Any] = {"limit": 2}
    while True:
        response = await api.get(url, params=params)
        assert response.status_code == 200
        body = response.json()
        assert len(body["conversations"]) <= 2
        seen += [item["id"] for item in body["conversations"]]
        if body["nextCursor"] is None:
            break
        params["cursor"] = body["nextCursor"]
    assert seen == list(reversed(ids))

    item = (await api.get(url)).json()["conversations"][0]
    assert item["visitor"]["uid"] and item["status"] == "open"
    assert item["unreadCount"] == 1 and item["lastSeq"] == 1
    assert item["lastMessageSnippet"] == "m0"
    assert item["lastMessageAt"].endswith("Z") and item["updatedAt"].endswith("Z")
    closed = await api.get(url, params={"status": "closed"})
    assert closed.json() == {"conversations": [], "nextCursor": None}


async def test_messages_after_and_before_seq(
    api: httpx.AsyncClient, store: MessageStore, project: Project
) -> None:
    conversation_id = await seed(store, project.id, uid(), count=10)
    url = f"/api/projects/{project.id}/conversations/{conversation_id}/messages"

    async def seqs(**params: Any) -> list[int]:
        response = await api.get(url, params=params)
        assert response.status_code == 200, response.text
        return [m["seq"] for m in response.json()["messages"]]

    assert await seqs() == list(range(1, 11))
    assert await seqs(after_seq=7) == [8, 9, 10]
    assert await seqs(after_seq=2, limit=3) == [3, 4, 5]
    assert await seqs(before_seq=4) == [1, 2, 3]
    assert await seqs(before_seq=9, limit=2) == [7, 8]
    message = (await api.get(url, params={"after_seq": 9})).json()["messages"][0]
    assert message["conversationId"] == conversation_id and message["content"] == "m9"


async def test_patch_read_resets_unread_and_writes_two_outbox_rows(
    api: httpx.AsyncClient, store: MessageStore, project: Project, engine: AsyncEngine
) -> None:
    visitor = uid()
    conversation_id = await seed(store, project.id, visitor, count=3)

    response = await api.patch(
        f"/api/projects/{project.id}/conversations/{conversation_id}", json={"read": True}
    )

    assert response.status_code == 200, response.text
    assert response.json()["unreadCount"] == 0 and response.json()["id"] == conversation_id
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                sa.select(outbox.c.event_type, outbox.c.payload)
                .where(outbox.c.event_type != "message.created")
                .order_by(outbox.c.id)
            )
        ).all()
    route = {"projectId": project.id, "conversationId": conversation_id, "visitorUid": visitor}
    assert [(row.event_type, row.payload) for row in rows] == [
        (
            "conversation.updated",
            {"type": "conversation.updated", **route, "fields": {"unreadCount": 0}},
        ),
        ("messages.read", {"type": "messages.read", **route, "upToSeq": 3, "by": "agent"}),
    ]
    listed = await api.get(f"/api/projects/{project.id}/conversations")
    assert listed.json()["conversations"][0]["unreadCount"] == 0


async def test_patch_status_and_the_reopen_conflict(
    api: httpx.AsyncClient, store: MessageStore, project: Project
) -> None:
    visitor = uid()
    first = await seed(store, project.id, visitor)
    url = f"/api/projects/{project.id}/conversations/{first}"

    closed = await api.patch(url, json={"status": "closed"})
    assert closed.status_code == 200 and closed.json()["status"] == "closed"
    await seed(store, project.id, visitor)  # a new open conversation for the same visitor
    assert_error(await api.patch(url, json={"status": "open"}), 409, "conflict")
    both = await api.patch(url, json={"read": True, "status": "closed"})
    assert both.status_code == 200
    assert both.json()["status"] == "closed" and both.json()["unreadCount"] == 0


async def test_visitor_details_with_session_metadata(
    api: httpx.AsyncClient, store: MessageStore, project: Project
) -> None:
    visitor = uid()
    metadata = {
        "referrer": "https://search.example/",
        "landingPage": "https://acme.example/",
        "urlHistory": [{"url": "https://acme.example/", "title": "Home", "timestamp": 5}],
    }
    await store.append([incoming(project.id, visitor, "hi", session_metadata=metadata)])

    response = await api.get(f"/api/projects/{project.id}/visitors/{visitor}")

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["uid"] == visitor and body["projectId"] == project.id
    assert body["sessionMetadata"] == metadata and body["pageHistory"] == []
    assert [(c["status"], c["lastSeq"]) for c in body["conversations"]] == [("open", 1)]
    assert set(body) == {
        "uid",
        "projectId",
        "createdAt",
        "lastSeenAt",
        "sessionMetadata",
        "pageHistory",
        "conversations",
    }
    missing = await api.get(f"/api/projects/{project.id}/visitors/nobody")
    assert_error(missing, 404, "not_found")


async def test_other_projects_are_forbidden_and_their_ids_not_found(
    gateway_url: str,
    store: MessageStore,
    project: Project,
    directory: Directory,
    signer: TokenSigner,
) -> None:
    other = await directory.create_project(name="B")
    bob = await directory.add_agent(project_id=other.id, email="bob@b.test")
    theirs = await seed(store, project.id, "a-visitor")
    headers = {"Authorization": f"Bearer {signer.issue(bob.id)}"}
    a, b = f"/api/projects/{project.id}", f"/api/projects/{other.id}"
    async with httpx.AsyncClient(base_url=gateway_url, headers=headers) as client:
        for path in (
            f"{a}/conversations",
            f"{a}/conversations/{theirs}/messages",
            f"{a}/visitors/a-visitor",
            f"{a}/sync",
            "/api/projects/424242/conversations",
        ):
            assert_error(await client.get(path), 403, "forbidden")
        assert_error(
            await client.patch(f"{a}/conversations/{theirs}", json={"read": True}), 403, "forbidden"
        )
        assert_error(await client.get(f"{b}/conversations/{theirs}/messages"), 404, "not_found")
        assert_error(
            await client.patch(f"{b}/conversations/{theirs}", json={"read": True}), 404, "not_found"
        )
        assert_error(await client.get(f"{b}/visitors/a-visitor"), 404, "not_found")


async def test_missing_and_bad_tokens_are_401(
    gateway_url: str, project: Project, agent_token: str, signer: TokenSigner
) -> None:
    url = f"{gateway_url}/api/projects/{project.id}/conversations"
    payload, signature = agent_token.split(".")
    async with httpx.AsyncClient() as client:
        for headers in (
            {},
            {"Authorization": agent_token},
            {"Authorization": "Basic abc"},
            {"Authorization": "Bearer"},
            {"Authorization": "Bearer garbage"},
            {"Authorization": f"Bearer {payload}.{signature[:-2]}xx"},
            {"Authorization": f"Bearer {signer.issue(999999)}"},
        ):
            response = await client.get(url, headers=headers)
            assert_error(response, 401, "invalid_token")
            assert response.headers["www-authenticate"] == "Bearer"
        ok = await client.get(url, headers={"Authorization": f"bearer {agent_token}"})
        assert ok.status_code == 200


async def test_malformed_requests_are_400(
    api: httpx.AsyncClient, store: MessageStore, project: Project
) -> None:
    conversation_id = await seed(store, project.id, uid())
    base = f"/api/projects/{project.id}"
    for path, params in [
        (f"{base}/conversations", {"limit": "0"}),
        (f"{base}/conversations", {"limit": "101"}),
        (f"{base}/conversations", {"limit": "ten"}),
        (f"{base}/conversations", {"status": "pending"}),
        (f"{base}/conversations", {"cursor": "not-a-cursor"}),
        (f"{base}/conversations", {"page": "2"}),
        (f"{base}/conversations/{conversation_id}/messages", {"after_seq": "-1"}),
        (f"{base}/conversations/{conversation_id}/messages", {"before_seq": "x"}),
        (f"{base}/conversations/{conversation_id}/messages", {"afterSeq": "1"}),
        (f"{base}/conversations/abc/messages", {}),
        (f"{base}/sync", {"since": "bogus"}),
        (f"{base}/sync", {"last_seqs": "1-2"}),
        ("/api/projects/x/conversations", {}),
    ]:
        assert_error(await api.get(path, params=params), 400, "invalid_payload")
    url = f"{base}/conversations/{conversation_id}"
    for body in (b"not json", b"[]", b"{}", b'{"read": false}', b'{"status": "x"}', b'{"x": 1}'):
        response = await api.patch(url, content=body)
        assert_error(response, 400, "invalid_payload")


async def test_http_sync_returns_what_changed_after_the_cursor(
    api: httpx.AsyncClient, store: MessageStore, project: Project, engine: AsyncEngine
) -> None:
    a = uid()
    a_id = await seed(store, project.id, a, count=2)
    await seed(store, project.id, uid())
    async with engine.begin() as conn:  # a dashboard that last synced a minute ago
        await conn.execute(
            conversations.update().values(
                updated_at=conversations.c.updated_at - sa.text("interval '1 minute'")
            )
        )
    url = f"/api/projects/{project.id}/sync"
    first = (await api.get(url)).json()
    assert len(first["conversations"]) == 2

    await store.append([incoming(project.id, a, "new")])
    c_id = await seed(store, project.id, uid())
    later = await api.get(url, params={"since": first["cursor"], "last_seqs": f"{a_id}:2"})

    assert later.status_code == 200
    body = later.json()
    assert [c["id"] for c in body["conversations"]] == [c_id, a_id]
    assert [m["content"] for m in body["messages"][str(a_id)]] == ["new"]
    assert [m["seq"] for m in body["messages"][str(c_id)]] == [1]
    assert body["cursor"] and body["hasMore"] is False


async def test_sync_socket_event(
    gateway_url: str,
    agent_token: str,
    store: MessageStore,
    project: Project,
    directory: Directory,
) -> None:
    conversation_id = await seed(store, project.id, uid(), count=3)
    other = await directory.create_project(name="Other")
    dash = await clients.dashboard(gateway_url, agent_token, project.id)
    try:
        body = await dash.call("sync", {"projectId": project.id})
        assert [c["id"] for c in body["conversations"]] == [conversation_id]
        assert [m["seq"] for m in body["messages"][str(conversation_id)]] == [1, 2, 3]

        caught_up = await dash.call(
            "sync",
            {
                "projectId": project.id,
                "since": body["cursor"],
                "lastSeqs": {str(conversation_id): 2},
            },
        )
        assert [m["seq"] for m in caught_up["messages"][str(conversation_id)]] == [3]

        forbidden = await dash.call("sync", {"projectId": other.id})
        assert forbidden["ok"] is False and forbidden["error"]["code"] == "forbidden"
        for bad in ({"projectId": "x"}, {"projectId": project.id, "since": "?"}, "7"):
            ack = await dash.call("sync", bad)
            assert ack["ok"] is False and ack["error"]["code"] == "invalid_payload", bad
    finally:
        await dash.close()


async def test_sync_pages_alike_over_the_socket_and_http(
    api: httpx.AsyncClient,
    gateway_url: str,
    agent_token: str,
    store: MessageStore,
    project: Project,
) -> None:
    """121 changed conversations, one longer than an answer holds: the same answers either way.

    The long one is the newest: the first answer is its first 200 messages; the
    second finishes it and starts on the others, 50 conversations at most.
    """
    await store.append([incoming(project.id, uid(), f"m{i}") for i in range(120)])
    chatty = await seed(store, project.id, uid(), count=SYNC_MAX_MESSAGES + 20)
    last_seqs = {str(chatty): 0}

    async def by_socket(dash: clients.Recorder) -> list[dict[str, Any]]:
        answers, since = [], None
        while True:
            body: dict[str, Any] = {"projectId": project.id, "lastSeqs": last_seqs}
            if since:
                body["since"] = since
            answers.append(await dash.call("sync", body))
            since = answers[-1]["cursor"]
            if not answers[-1]["hasMore"]:
                return answers

    async def by_http() -> list[dict[str, Any]]:
        answers, since = [], None
        while True:
            params = {"last_seqs": f"{chatty}:0", **({"since": since} if since else {})}
            response = await api.get(f"/api/projects/{project.id}/sync", params=params)
            assert response.status_code == 200, response.text
            answers.append(response.json())
            since = answers[-1]["cursor"]
            if not answers[-1]["hasMore"]:
                return answers

    dash = await clients.dashboard(gateway_url, agent_token, project.id)
    try:
        socket_answers = await by_socket(dash)
    finally:
        await dash.close()
    http_answers = await by_http()
    for answers in (socket_answers, http_answers):
        assert [a["hasMore"] for a in answers] == [True, True, True, False]
        assert all(len(a["conversations"]) <= SYNC_MAX_CONVERSATIONS for a in answers)
        ids = [m["id"] for a in answers for listed in a["messages"].values() for m in listed]
        assert len(ids) == len(set(ids)) == 120 + SYNC_MAX_MESSAGES + 20
    assert [[c["id"] for c in a["conversations"]] for a in socket_answers] == [
        [c["id"] for c in a["conversations"]] for a in http_answers
    ]


async def test_a_dead_database_is_503(
    settings: Settings, agent_token: str, project: Project
) -> None:
    dead = settings.replace(database_url=f"postgresql://parley@127.0.0.1:{free_port()}/gone")
    async with (
        gateway_in_process(dead) as url,
        httpx.AsyncClient(base_url=url, timeout=15) as client,
    ):
        response = await client.get(
            f"/api/projects/{project.id}/conversations",
            headers={"Authorization": f"Bearer {agent_token}"},
        )
    assert_error(response, 503, "unavailable")
