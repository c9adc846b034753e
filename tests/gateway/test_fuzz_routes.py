"""Fuzz campaign, HTTP routes: hostile paths, query strings, bodies and tokens get a 4xx
JSON error (never a 500), other callers are still served, and a refused call changes
nothing in the database and produces nothing."""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway import replies
from gateway.tokens import TokenSigner
from parley.settings import Settings
from persistence.directory import Directory
from persistence.store import MessageStore
from tests.factories import incoming, project_with_agent
from tests.gateway import fuzz
from tests.servers import gateway_in_process

REPLY_WAIT = 0.05  # seconds; no worker runs, so an accepted reply is a 202 after this


def segment(text: str) -> str:
    return quote(text.encode("utf-8", "surrogatepass"), safe="")


# Path segments: anything but what changes which route matches.
path_texts = (fuzz.texts | st.sampled_from([str(n) for n in fuzz.BIG_NUMBERS])).filter(
    lambda text: text.strip("\t\n\r\x0b\x0c") not in ("", ".", "..") and "/" not in text
)


@dataclasses.dataclass(kw_only=True)
class Target:
    project_id: int
    conversation_id: int
    visitor_uid: str
    token: str


Route = tuple[str, Callable[[Target], str], tuple[str, ...], dict[str, st.SearchStrategy[Any]]]


def body_fields(target: Target) -> dict[str, dict[str, st.SearchStrategy[Any]]]:
    return {
        "PATCH": {"read": st.just(True), "status": st.sampled_from(["open", "closed"])},
        "POST": {
            "content": st.just("hello") | st.text(min_size=1, max_size=40),
            "tempId": fuzz.temp_ids(),
        },
    }


# route -> (method, path template, the query parameters it takes)
ROUTES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "list_conversations": ("GET", "/api/projects/{P}/conversations", ("status", "cursor", "limit")),
    "list_messages": (
        "GET",
        "/api/projects/{P}/conversations/{C}/messages",
        ("after_seq", "before_seq", "limit"),
    ),
    "update_conversation": ("PATCH", "/api/projects/{P}/conversations/{C}", ()),
    "visitor_details": ("GET", "/api/projects/{P}/visitors/{U}", ()),
    "sync": ("GET", "/api/projects/{P}/sync", ("since", "last_seqs")),
    "post_reply": ("POST", "/api/projects/{P}/conversations/{C}/messages", ()),
}


@dataclasses.dataclass(kw_only=True)
class Campaign:
    url: str
    target: Target
    engine: AsyncEngine
    http: httpx.AsyncClient
    produced: list[str] = dataclasses.field(default_factory=list)

    async def others_are_served(self) -> None:
        ok = await self.http.get(
            f"/api/projects/{self.target.project_id}/conversations",
            headers={"Authorization": f"Bearer {self.target.token}"},
        )
        assert ok.status_code == 200, ok.text


@pytest.fixture
async def campaign(
    settings: Settings, directory: Directory, engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Campaign]:
    monkeypatch.setattr(replies, "REPLY_WAIT", REPLY_WAIT)
    project, agent = await project_with_agent(directory)
    visitor_uid = str(uuid.uuid4())
    seeded = await MessageStore(engine=engine).append([incoming(project.id, visitor_uid, "seed")])
    target = Target(
        project_id=project.id,
        conversation_id=int(seeded.stored[-1]["conversationId"]),
        visitor_uid=visitor_uid,
        token=TokenSigner(secret=settings.secret, ttl=settings.token_ttl).issue(agent.id),
    )
    relaxed = fuzz.relaxed(settings)
    async with (
        gateway_in_process(relaxed) as url,
        httpx.AsyncClient(base_url=url, timeout=fuzz.ACK_TIMEOUT) as http,
    ):
        run = Campaign(url=url, target=target, engine=engine, http=http)
        yield run
    assert settings.kafka_bootstrap_servers
    on_topic = await fuzz.topic_temp_ids(settings.kafka_bootstrap_servers, settings.agent_topic)
    assert sorted(on_topic) == sorted(run.produced), "the agent topic holds a refused reply"


def requests(target: Target, route: str) -> st.SearchStrategy[dict[str, Any]]:
    method, template, params = ROUTES[route]
    valid = {"P": str(target.project_id), "C": str(target.conversation_id), "U": target.visitor_uid}
    parts = {
        name: st.one_of(st.just(value), st.just(value), path_texts) for name, value in valid.items()
    }
    names = st.sampled_from(params) | fuzz.texts if params else fuzz.texts
    queries = st.dictionaries(names, fuzz.texts | st.sampled_from(["1", "0", "99999999999"]))
    token = target.token
    tokens = st.sampled_from(
        [f"Bearer {token}"] * 6
        + [f"bearer {token}", "Bearer a.ÿ", "Bearer", "Basic eA==", f"Bearer {token[:-1]}x"]
        + ["Bearer " + "a" * 5_000, f"Bearer {token}.{token}"]
    )
    bodies: st.SearchStrategy[bytes] = st.just(b"")
    if method in ("PATCH", "POST"):
        fields = body_fields(target)[method]
        bodies = st.one_of(
            fuzz.payloads(fields).map(lambda value: json.dumps(value, default=repr).encode()),
            fuzz.payloads(fields).map(lambda value: json.dumps(value, default=repr).encode()),
            st.binary(max_size=64),
            st.sampled_from([b"{", b"\xff\xfe\x00", b" " * 70_000, b"[" * 5_000, b"NaN"]),
        )
    return st.fixed_dictionaries(
        {
            "method": st.just(method),
            "path": st.fixed_dictionaries(parts).map(
                lambda chosen: template.format(**{k: segment(v) for k, v in chosen.items()})
            ),
            "query": queries.map(
                lambda q: "&".join(f"{segment(k)}={segment(v)}" for k, v in q.items())
            ),
            "authorization": tokens,
            "body": bodies,
        }
    )


@pytest.mark.parametrize("route", sorted(ROUTES))
@fuzz.FUZZ
@given(data=st.data())
async def test_every_route_answers_hostile_input(
    campaign: Campaign, route: str, data: st.DataObject
) -> None:
    request = data.draw(requests(campaign.target, route), label="request")
    before = await fuzz.snapshot(campaign.engine)
    url = request["path"] + (f"?{request['query']}" if request["query"] else "")
    response = await campaign.http.request(
        request["method"],
        url,
        headers={"Authorization": request["authorization"].encode("latin-1")},
        content=request["body"],
    )

    assert response.status_code < 500, response.text[:500]
    body = response.json()
    if response.status_code >= 400:
        error = body.get("error")
        assert isinstance(error, dict) and error.get("code") in fuzz.HTTP_CODES, body
        assert isinstance(error.get("message"), str) and error["message"], body
        assert await fuzz.snapshot(campaign.engine) == before, "a refused call changed the database"
    elif route == "post_reply":
        campaign.produced.append(body["tempId"])
    await campaign.others_are_served()
