"""The migrations' revisions, read from the scripts' source without importing Alembic.

The gateway checks the database's revision against this code's head at every
``/readyz``, the worker at start (:func:`persistence.schema.require_schema`).
Alembic's ``ScriptDirectory`` would answer by importing Alembic, Mako and
Pygments: 11 MB of resident memory in each of those processes, which never
migrate anything. Every script declares ``revision`` and ``down_revision`` as
literals (Alembic's template does); ``tests/persistence/test_revisions.py``
checks these answers against Alembic's own.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
from pathlib import Path

VERSIONS = Path(__file__).parent / "migrations" / "versions"
DECLARED = ("revision", "down_revision")  # the module-level names read from each script


@dataclasses.dataclass(frozen=True, kw_only=True)
class Revisions:
    head: str  # the newest revision, the one this code needs
    known: frozenset[str]  # every revision this code ships


def _declared(path: Path) -> tuple[str, tuple[str, ...]] | None:
    """``(revision, down_revisions)`` of one script; None when it declares no revision."""
    values: dict[str, object] = {}
    for node in ast.parse(path.read_text(encoding="utf-8"), str(path)).body:
        target: ast.expr
        if isinstance(node, ast.AnnAssign) and node.value is not None:
            target, value = node.target, node.value
        elif isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        else:
            continue
        if isinstance(target, ast.Name) and target.id in DECLARED:
            values[target.id] = ast.literal_eval(value)
    revision = values.get("revision")
    if revision is None:
        return None
    if not isinstance(revision, str):
        raise ValueError(f"{path.name}: revision must be a string literal")
    down = values.get("down_revision")
    if down is None:
        return revision, ()
    if isinstance(down, str):
        return revision, (down,)
    if isinstance(down, tuple | list) and all(isinstance(item, str) for item in down):
        return revision, tuple(down)
    raise ValueError(f"{path.name}: down_revision must be None, a string or strings")


def read_revisions(versions: Path = VERSIONS) -> Revisions:
    declared = dict(
        found for path in sorted(versions.glob("*.py")) if (found := _declared(path)) is not None
    )
    if not declared:
        raise ValueError(f"no migrations in {versions}")
    parents = {parent for downs in declared.values() for parent in downs}
    heads = sorted(set(declared) - parents)
    if len(heads) != 1:
        # Alembic refuses the same (MultipleHeads): merge them with `alembic merge`.
        raise ValueError(f"the migrations have {len(heads)} heads: {', '.join(heads)}")
    return Revisions(head=heads[0], known=frozenset(declared))


@functools.cache
def shipped() -> Revisions:
    """This code's migrations (read once per process)."""
    return read_revisions()
