"""The revisions read from the scripts' source are Alembic's, and cost no Alembic import."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory

from persistence.revisions import VERSIONS, read_revisions, shipped
from persistence.schema import alembic_config, head_revision, known_revisions
from tests.servers import ROOT


def test_the_shipped_revisions_are_alembics() -> None:
    scripts = ScriptDirectory.from_config(alembic_config("postgresql://"))
    assert shipped().head == head_revision() == scripts.get_current_head()
    assert shipped().known == known_revisions()
    assert known_revisions() == {script.revision for script in scripts.walk_revisions()}


def test_the_gateway_checks_revisions_without_importing_alembic() -> None:
    """Alembic, Mako and Pygments are 11 MB of each gateway's memory."""
    script = (
        "import sys, gateway.app, parley.cli, persistence.schema as schema\n"
        "schema.head_revision(); schema.known_revisions()\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('alembic', 'mako')))\n"
    )
    imported = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert imported.stdout.strip() == "[]"


def _script(folder: Path, name: str, body: str) -> None:
    (folder / f"{name}.py").write_text(f'"""{name}."""\n{body}\n', encoding="utf-8")


def test_branches_merges_and_plain_assignments(tmp_path: Path) -> None:
    _script(tmp_path, "a", 'revision: str = "a"\ndown_revision: str | None = None')
    _script(tmp_path, "b", 'revision = "b"\ndown_revision = "a"')
    _script(tmp_path, "c", 'revision = "c"\ndown_revision = "a"')
    _script(tmp_path, "d", 'revision = "d"\ndown_revision = ("b", "c")')
    _script(tmp_path, "__init__", "")  # declares nothing: not a migration
    revisions = read_revisions(tmp_path)
    assert revisions.head == "d"
    assert revisions.known == {"a", "b", "c", "d"}


def test_two_heads_are_refused(tmp_path: Path) -> None:
    _script(tmp_path, "a", 'revision = "a"\ndown_revision = None')
    _script(tmp_path, "b", 'revision = "b"\ndown_revision = "a"')
    _script(tmp_path, "c", 'revision = "c"\ndown_revision = "a"')
    with pytest.raises(ValueError, match="2 heads: b, c"):
        read_revisions(tmp_path)


def test_a_revision_that_is_not_a_literal_is_refused(tmp_path: Path) -> None:
    _script(tmp_path, "a", "revision = 7\ndown_revision = None")
    with pytest.raises(ValueError, match="string literal"):
        read_revisions(tmp_path)
    _script(tmp_path, "a", 'revision = "a" + "b"\ndown_revision = None')
    with pytest.raises(ValueError):
        read_revisions(tmp_path)


def test_the_versions_folder_is_the_one_alembic_reads() -> None:
    config = alembic_config("postgresql://")
    assert Path(config.get_main_option("script_location") or "") / "versions" == VERSIONS
