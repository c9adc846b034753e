"""Projects, agents and who belongs where."""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from persistence.errors import NotFound, wrap_errors
from persistence.models import agents, project_members, projects

IDENTITY_SECRET_BYTES = 32  # random bytes of a project's identity-verification secret


@dataclasses.dataclass(frozen=True, kw_only=True)
class Project:
    id: int
    name: str
    allowed_origins: tuple[str, ...]
    require_identity: bool = False
    # Never in a repr: it would land in logs and tracebacks.
    identity_secret: str | None = dataclasses.field(default=None, repr=False)

    def allows_origin(self, origin: str | None) -> bool:
        """No list means any origin; with a list, the browser's Origin must be on it."""
        if not self.allowed_origins:
            return True
        return origin is not None and origin.rstrip("/") in self.allowed_origins


@dataclasses.dataclass(frozen=True, kw_only=True)
class Agent:
    id: int
    email: str
    display_name: str
    token_version: int = 0


def _project(row: Any) -> Project:
    return Project(
        id=row.id,
        name=row.name,
        allowed_origins=tuple(row.allowed_origins),
        require_identity=row.require_identity,
        identity_secret=row.identity_secret,
    )


def _agent(row: Any) -> Agent:
    return Agent(
        id=row.id,
        email=row.email,
        display_name=row.display_name,
        token_version=row.token_version,
    )


class Directory:
    """Reads and writes projects, agents and memberships."""

    def __init__(self, *, engine: AsyncEngine) -> None:
        self._engine = engine

    async def create_project(
        self, *, name: str, origins: Sequence[str] = (), require_identity: bool = False
    ) -> Project:
        cleaned = tuple(origin.rstrip("/") for origin in origins)
        async with wrap_errors(), self._engine.begin() as conn:
            row = (
                await conn.execute(
                    projects.insert()
                    .values(
                        name=name,
                        allowed_origins=list(cleaned),
                        require_identity=require_identity,
                        identity_secret=secrets.token_hex(IDENTITY_SECRET_BYTES),
                    )
                    .returning(projects)
                )
            ).one()
        return _project(row)

    async def get_project(self, project_id: int) -> Project:
        async with wrap_errors(), self._engine.connect() as conn:
            row = (
                await conn.execute(sa.select(projects).where(projects.c.id == project_id))
            ).one_or_none()
        if row is None:
            raise NotFound(f"project {project_id} does not exist")
        return _project(row)

    async def first_project(self) -> Project | None:
        async with wrap_errors(), self._engine.connect() as conn:
            row = (
                await conn.execute(sa.select(projects).order_by(projects.c.id).limit(1))
            ).one_or_none()
        if row is None:
            return None
        return _project(row)

    async def identity_secret(self, project_id: int, *, rotate: bool = False) -> Project:
        """The project with its secret, made (or, with ``rotate``, replaced) when asked."""
        fresh = secrets.token_hex(IDENTITY_SECRET_BYTES)
        value = (
            sa.literal(fresh)
            if rotate
            else sa.func.coalesce(projects.c.identity_secret, sa.literal(fresh))
        )
        return await self._update_project(project_id, identity_secret=value)

    async def set_identity_verification(self, project_id: int, *, required: bool) -> Project:
        project = await self._update_project(project_id, require_identity=required)
        if required and project.identity_secret is None:
            project = await self.identity_secret(project_id)
        return project

    async def _update_project(self, project_id: int, **values: Any) -> Project:
        async with wrap_errors(), self._engine.begin() as conn:
            row = (
                await conn.execute(
                    projects.update()
                    .where(projects.c.id == project_id)
                    .values(**values)
                    .returning(projects)
                )
            ).one_or_none()
        if row is None:
            raise NotFound(f"project {project_id} does not exist")
        return _project(row)

    async def add_agent(self, *, project_id: int, email: str, display_name: str = "") -> Agent:
        """Create the agent if its email is new, and make it a member of the project."""
        await self.get_project(project_id)
        name = display_name or email.split("@", 1)[0]
        async with wrap_errors(), self._engine.begin() as conn:
            # DO UPDATE (a no-op) rather than DO NOTHING so RETURNING yields the existing row.
            row = (
                await conn.execute(
                    insert(agents)
                    .values(email=email, display_name=name)
                    .on_conflict_do_update(index_elements=[agents.c.email], set_={"email": email})
                    .returning(agents)
                )
            ).one()
            await conn.execute(
                insert(project_members)
                .values(project_id=project_id, agent_id=row.id)
                .on_conflict_do_nothing()
            )
        return _agent(row)

    async def get_agent(self, agent_id: int) -> Agent:
        async with wrap_errors(), self._engine.connect() as conn:
            row = (
                await conn.execute(sa.select(agents).where(agents.c.id == agent_id))
            ).one_or_none()
        if row is None:
            raise NotFound(f"agent {agent_id} does not exist")
        return _agent(row)

    async def revoke_tokens(self, agent_id: int) -> Agent:
        """Invalidate every token issued to the agent so far (they carry the old version)."""
        async with wrap_errors(), self._engine.begin() as conn:
            row = (
                await conn.execute(
                    agents.update()
                    .where(agents.c.id == agent_id)
                    .values(token_version=agents.c.token_version + 1)
                    .returning(agents)
                )
            ).one_or_none()
        if row is None:
            raise NotFound(f"agent {agent_id} does not exist")
        return _agent(row)

    async def remove_member(self, *, project_id: int, agent_id: int) -> bool:
        """Take the agent out of the project; False when it was not a member."""
        async with wrap_errors(), self._engine.begin() as conn:
            result = await conn.execute(
                project_members.delete().where(
                    project_members.c.project_id == project_id,
                    project_members.c.agent_id == agent_id,
                )
            )
        return bool(result.rowcount)

    async def is_member(self, *, agent_id: int, project_id: int) -> bool:
        async with wrap_errors(), self._engine.connect() as conn:
            found = (
                await conn.execute(
                    sa.select(project_members.c.agent_id).where(
                        project_members.c.agent_id == agent_id,
                        project_members.c.project_id == project_id,
                    )
                )
            ).first()
        return found is not None
