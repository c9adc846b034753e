"""Projects, agents and who belongs where."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from persistence.errors import NotFound, wrap_errors
from persistence.models import agents, project_members, projects


@dataclasses.dataclass(frozen=True, kw_only=True)
class Project:
    id: int
    name: str
    allowed_origins: tuple[str, ...]

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


class Directory:
    """Reads and writes projects, agents and memberships."""

    def __init__(self, *, engine: AsyncEngine) -> None:
        self._engine = engine

    async def create_project(self, *, name: str, origins: Sequence[str] = ()) -> Project:
        cleaned = tuple(origin.rstrip("/") for origin in origins)
        async with wrap_errors(), self._engine.begin() as conn:
            row = (
                await conn.execute(
                    projects.insert()
                    .values(name=name, allowed_origins=list(cleaned))
                    .returning(projects.c.id)
                )
            ).one()
        return Project(id=row.id, name=name, allowed_origins=cleaned)

    async def get_project(self, project_id: int) -> Project:
        async with wrap_errors(), self._engine.connect() as conn:
            row = (
                await conn.execute(sa.select(projects).where(projects.c.id == project_id))
            ).one_or_none()
        if row is None:
            raise NotFound(f"project {project_id} does not exist")
        return Project(id=row.id, name=row.name, allowed_origins=tuple(row.allowed_origins))

    async def first_project(self) -> Project | None:
        async with wrap_errors(), self._engine.connect() as conn:
            row = (
                await conn.execute(sa.select(projects).order_by(projects.c.id).limit(1))
            ).one_or_none()
        if row is None:
            return None
        return Project(id=row.id, name=row.name, allowed_origins=tuple(row.allowed_origins))

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
                    .returning(agents.c.id, agents.c.display_name)
                )
            ).one()
            await conn.execute(
                insert(project_members)
                .values(project_id=project_id, agent_id=row.id)
                .on_conflict_do_nothing()
            )
        return Agent(id=row.id, email=email, display_name=row.display_name)

    async def get_agent(self, agent_id: int) -> Agent:
        async with wrap_errors(), self._engine.connect() as conn:
            row = (
                await conn.execute(sa.select(agents).where(agents.c.id == agent_id))
            ).one_or_none()
        if row is None:
            raise NotFound(f"agent {agent_id} does not exist")
        return Agent(id=row.id, email=row.email, display_name=row.display_name)

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
