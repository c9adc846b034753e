"""The message store against a real PostgreSQL: idempotent, gapless, one transaction."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from persistence.batch_sql import ISO_CREATED_AT
from persistence.directory import Directory
from persistence.models import agents, conversations, messages, outbox, visitors
from persistence.store import MessageStore, iso, message_shape
from tests.factories import incoming, uid


async def count(engine: AsyncEngine, table: sa.Table) -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(sa.select(sa.func.count()).select_from(table)) or 0)


async def test_appends_with_gapless_seq_and_one_outbox_row_each(
    engine: AsyncEngine, directory: Directory
) -> None:
    project = await directory.create_project(name="p")
    visitor = uid()
    store = MessageStore(engine=engine)

    first = await store.append([incoming(project.id, visitor, f"m{i}") for i in range(3)])
    second = await store.append([incoming(project.id, visitor, f"m{i}") for i in range(3, 5)])

    seqs = [m["seq"] for m in first.stored + second.stored]
    assert seqs == [1, 2, 3, 4, 5]
    assert [m["content"] for m in first.stored + second.stored] == [f"m{i}" for i in range(5)]
    assert await count(engine, outbox) == 5
    shape = first.stored[0]
    assert shape["fromCustomer"] is True and shape["senderType"] == "visitor"
    assert shape["status"] == "sent" and shape["visitorUid"] == visitor
    assert shape["createdAt"].endswith("Z")


async def test_redelivered_messages_are_stored_once_without_outbox_rows(
    engine: AsyncEngine, directory: Directory
) -> None:
    project = await directory.create_project(name="p")
    visitor = uid()
    store = MessageStore(engine=engine)
    batch = [incoming(project.id, visitor, f"m{i}") for i in range(3)]

    await store.append(batch)
    again = await store.append([*batch, batch[0]])

    assert again.stored == []
    assert again.duplicates == 4
    assert await count(engine, messages) == 3
    assert await count(engine, outbox) == 3


async def test_duplicate_inside_one_batch_is_stored_once(
    engine: AsyncEngine, directory: Directory
) -> None:
    project = await directory.create_project(name="p")
    message = incoming(project.id, uid())
    result = await MessageStore(engine=engine).append([message, message])
    assert [m["seq"] for m in result.stored] == [1]
    assert result.duplicates == 1


async def test_concurrent_writers_keep_seq_gapless(
    engine: AsyncEngine, directory: Directory
) -> None:
    """Two workers (a rebalance zombie and its successor) writing one conversation."""
    project = await directory.create_project(name="p")
    visitor = uid()
    store = MessageStore(engine=engine)
    batches = [[incoming(project.id, visitor, f"{w}-{i}") for i in range(5)] for w in range(4)]

    await asyncio.gather(*(store.append(batch) for batch in batches))

    async with engine.connect() as conn:
        seqs = (await conn.execute(sa.select(messages.c.seq).order_by(messages.c.seq))).scalars()
        assert list(seqs) == list(range(1, 21))
        open_conversations = await conn.scalar(
            sa.select(sa.func.count()).select_from(conversations)
        )
    assert open_conversations == 1


async def test_conversation_summary_and_session_metadata(
    engine: AsyncEngine, directory: Directory
) -> None:
    project = await directory.create_project(name="p")
    visitor = uid()
    metadata = {"referrer": "https://search.example", "landingPage": "/pricing", "urlHistory": []}
    await MessageStore(engine=engine).append(
        [
            incoming(project.id, visitor, "first"),
            incoming(project.id, visitor, "x" * 500, session_metadata=metadata),
        ]
    )
    async with engine.connect() as conn:
        row = (await conn.execute(sa.select(conversations))).one()
    assert row.last_seq == 2
    assert row.unread_count == 2
    assert row.last_message_snippet == "x" * 120
    assert row.session_metadata == metadata


async def test_messages_of_unknown_projects_are_returned_not_stored(
    engine: AsyncEngine, directory: Directory
) -> None:
    project = await directory.create_project(name="p")
    good, bad = incoming(project.id, uid()), incoming(project.id + 1000, uid())
    result = await MessageStore(engine=engine).append([good, bad])
    assert [m["tempId"] for m in result.stored] == [good.temp_id]
    assert result.rejected == [(bad, f"project {bad.project_id} does not exist")]


async def test_visitors_of_one_batch_get_their_own_conversations(
    engine: AsyncEngine, directory: Directory
) -> None:
    project = await directory.create_project(name="p")
    a, b = uid(), uid()
    result = await MessageStore(engine=engine).append(
        [incoming(project.id, a), incoming(project.id, b), incoming(project.id, a)]
    )
    by_visitor = {(m["visitorUid"], m["seq"]) for m in result.stored}
    assert by_visitor == {(a, 1), (a, 2), (b, 1)}


async def test_outbox_ids_follow_seq_within_each_conversation(
    engine: AsyncEngine, directory: Directory
) -> None:
    """The relay publishes in outbox id order, so ids must follow seq."""
    project = await directory.create_project(name="p")
    visitors = [uid() for _ in range(5)]
    store = MessageStore(engine=engine)
    for round_ in range(4):
        await store.append(
            [incoming(project.id, v, f"{v}:{round_}:{i}") for i in range(7) for v in visitors]
        )
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.select(outbox).order_by(outbox.c.id))).all()
    by_conversation: dict[int, list[int]] = {}
    for row in rows:
        by_conversation.setdefault(row.conversation_id, []).append(row.payload["message"]["seq"])
    assert len(by_conversation) == 5
    assert all(seqs == list(range(1, 29)) for seqs in by_conversation.values())


async def test_agent_replies_share_the_conversation_seq(
    engine: AsyncEngine, directory: Directory
) -> None:
    project = await directory.create_project(name="p")
    agent = await directory.add_agent(project_id=project.id, email="ada@p.test", display_name="Ada")
    visitor = uid()
    store = MessageStore(engine=engine)
    first = await store.append([incoming(project.id, visitor, "help?")])
    conversation_id = first.stored[0]["conversationId"]
    reply = incoming(
        project.id,
        visitor,
        "on it",
        sender_type="agent",
        conversation_id=conversation_id,
        agent_id=agent.id,
    )
    result = await store.append([reply, reply])
    [shape] = result.stored
    assert result.duplicates == 1
    assert shape["seq"] == 2 and shape["senderType"] == "agent"
    assert shape["fromCustomer"] is False
    assert shape["agentId"] == agent.id and shape["agentName"] == "Ada"
    async with engine.connect() as conn:
        row = (await conn.execute(sa.select(conversations))).one()
    assert row.unread_count == 1  # replies are not unread for agents
    assert row.last_seq == 2 and row.last_message_snippet == "on it"


async def test_replies_naming_the_wrong_conversation_or_agent_are_rejected(
    engine: AsyncEngine, directory: Directory
) -> None:
    project = await directory.create_project(name="p")
    other = await directory.create_project(name="q")
    agent = await directory.add_agent(project_id=project.id, email="ada@p.test")
    visitor = uid()
    store = MessageStore(engine=engine)
    conversation_id = (await store.append([incoming(project.id, visitor)])).stored[0][
        "conversationId"
    ]

    def reply(**changes: object) -> object:
        fields: dict = {
            "sender_type": "agent",
            "conversation_id": conversation_id,
            "agent_id": agent.id,
        }
        fields.update(changes)
        return incoming(fields.pop("project_id", project.id), visitor, "x", **fields)

    result = await store.append(
        [
            reply(conversation_id=conversation_id + 99),
            reply(project_id=other.id),
            reply(agent_id=agent.id + 99),
        ]
    )
    assert result.stored == []
    reasons = [reason for _, reason in result.rejected]
    assert reasons == [
        f"conversation {conversation_id + 99} not found",
        f"conversation {conversation_id} not found",
        f"agent {agent.id + 99} does not exist",
    ]


async def test_stored_shapes_and_outbox_payloads_match_the_shape_history_builds(
    engine: AsyncEngine, directory: Directory
) -> None:
    # The store builds the shape in SQL; history (and the gateway's catch-up)
    # builds it in Python from the row: a client must get the same message both ways.
    project = await directory.create_project(name="p")
    agent = await directory.add_agent(project_id=project.id, email="ada@p.test", display_name="Ada")
    visitor = uid()
    store = MessageStore(engine=engine)
    first = await store.append(
        [
            incoming(project.id, visitor, 'quote " and \\ and \u00e9 \U0001f600'),
            incoming(project.id, visitor, "later", accepted_at="2026-01-02T03:04:05.678Z"),
        ]
    )
    conversation_id = first.stored[0]["conversationId"]
    reply = incoming(
        project.id,
        visitor,
        "on it",
        sender_type="agent",
        conversation_id=conversation_id,
        agent_id=agent.id,
    )
    second = await store.append([reply])

    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                sa.select(messages, visitors.c.uid.label("visitor_uid"), agents.c.display_name)
                .join(conversations, conversations.c.id == messages.c.conversation_id)
                .join(visitors, visitors.c.id == conversations.c.visitor_id)
                .outerjoin(agents, agents.c.id == messages.c.agent_id)
                .order_by(messages.c.seq)
            )
        ).all()
        payloads = (await conn.execute(sa.select(outbox.c.payload).order_by(outbox.c.id))).scalars()
        payloads = list(payloads)
    expected = [
        message_shape(row, visitor_uid=row.visitor_uid, agent_name=row.display_name) for row in rows
    ]
    assert first.stored + second.stored == expected
    assert [p["message"] for p in payloads] == expected
    assert [p["type"] for p in payloads] == ["message.created"] * 3
    assert [p["acceptedAt"] for p in payloads] == [None, "2026-01-02T03:04:05.678Z", None]


@pytest.mark.parametrize(
    "moment",
    [
        dt.datetime(2026, 11, 29, 23, 6, 26, 0, tzinfo=dt.UTC),
        dt.datetime(2026, 11, 29, 23, 6, 26, 1, tzinfo=dt.UTC),
        dt.datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=dt.UTC),
        dt.datetime(2026, 6, 30, 23, 59, 59, 999999, tzinfo=dt.timezone(dt.timedelta(hours=-7))),
    ],
)
async def test_the_sql_created_at_is_written_as_python_writes_it(
    engine: AsyncEngine, moment: dt.datetime
) -> None:
    query = sa.text(
        f"SELECT {ISO_CREATED_AT} FROM (SELECT CAST(:at AS timestamptz) AS created_at) m"
    )
    async with engine.connect() as conn:
        written = await conn.scalar(query, {"at": moment})
    assert written == iso(moment)
