"""Widget settings: defaults until set, validated, per project, reset to the default."""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from persistence.directory import Directory
from persistence.errors import NotFound
from persistence.widget_settings import InvalidSetting, WidgetSettings, WidgetSettingsStore


async def test_changes_are_kept_per_project_and_reset(
    engine: AsyncEngine, directory: Directory
) -> None:
    store = WidgetSettingsStore(engine=engine)
    acme = await directory.create_project(name="Acme")
    other = await directory.create_project(name="Other")
    assert await store.get(acme.id) == WidgetSettings()

    await store.update(acme.id, {"theme": "dark", "backgroundOpacity": 0.5})
    changed = await store.update(acme.id, {"headerText": "Acme help"})
    assert (changed.theme, changed.background_opacity, changed.header_text) == (
        "dark",
        0.5,
        "Acme help",
    )
    assert await store.get(acme.id) == changed
    assert await store.get(other.id) == WidgetSettings()

    reset = await store.update(acme.id, {}, reset=("theme",))
    assert reset.theme == "light" and reset.header_text == "Acme help"


@pytest.mark.parametrize(
    "changes",
    [
        {"theme": "blue"},
        {"headerText": "x" * 51},
        {"backgroundOpacity": 1.5},
        {"position": "top"},
        {"autoOpenDelay": -1},
        {"historyVisibility": "always"},
        {"companyLogoUrl": "javascript:alert(1)"},
        {"colour": "red"},
    ],
)
async def test_bad_values_are_refused_and_nothing_is_stored(
    engine: AsyncEngine, directory: Directory, changes: dict[str, object]
) -> None:
    store = WidgetSettingsStore(engine=engine)
    project = await directory.create_project(name="Acme")
    with pytest.raises(InvalidSetting):
        await store.update(project.id, {"theme": "dark", **changes})
    assert await store.get(project.id) == WidgetSettings()


async def test_an_unknown_project_is_not_found(engine: AsyncEngine) -> None:
    store = WidgetSettingsStore(engine=engine)
    with pytest.raises(NotFound):
        await store.get(424242)
    with pytest.raises(NotFound):
        await store.update(424242, {"theme": "dark"})
