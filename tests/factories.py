"""Small builders shared by the tests."""

from __future__ import annotations

import uuid
from typing import Any

from persistence.directory import Agent, Directory, Project
from persistence.store import IncomingMessage


def incoming(
    project_id: int, visitor_uid: str, content: str = "hello", **extra: Any
) -> IncomingMessage:
    return IncomingMessage(
        project_id=project_id,
        visitor_uid=visitor_uid,
        temp_id=extra.pop("temp_id", str(uuid.uuid4())),
        content=content,
        **extra,
    )


def uid() -> str:
    """A visitorUid as the widget makes it: a random UUID v4."""
    return str(uuid.uuid4())


async def project_with_agent(
    directory: Directory, *, name: str = "Acme", email: str = "ada@acme.test", **agent: str
) -> tuple[Project, Agent]:
    project = await directory.create_project(name=name)
    return project, await directory.add_agent(project_id=project.id, email=email, **agent)
