"""``parley project settings``: show, change and reset a project's widget settings."""

from __future__ import annotations

import json

from parley.settings import Settings
from tests.parley.test_cli import parley


def test_settings_are_shown_changed_and_reset(settings: Settings) -> None:
    project = json.loads(parley(settings, "project", "create", "--name", "Acme").stdout)["id"]
    shown = parley(settings, "project", "settings", "--project", str(project))
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["settings"]["theme"] == "light"

    changed = parley(
        settings,
        *("project", "settings", "--project", str(project)),
        *("--set", "theme=dark", "--set", "headerText=Acme help", "--set", "autoOpenDelay=10"),
    )
    assert changed.returncode == 0, changed.stderr
    values = json.loads(changed.stdout)["settings"]
    assert (values["theme"], values["headerText"], values["autoOpenDelay"]) == (
        "dark",
        "Acme help",
        10,
    )

    reset = parley(settings, "project", "settings", "--project", str(project), "--reset", "theme")
    assert json.loads(reset.stdout)["settings"]["theme"] == "light"
    assert json.loads(reset.stdout)["settings"]["headerText"] == "Acme help"


def test_a_bad_value_is_one_clear_sentence(settings: Settings) -> None:
    project = json.loads(parley(settings, "project", "create", "--name", "Acme").stdout)["id"]
    bad = parley(settings, "project", "settings", "--project", str(project), "--set", "theme=blue")
    assert bad.returncode == 2
    assert "theme must be one of light, dark" in bad.stderr
    missing = parley(settings, "project", "settings", "--project", "999999")
    assert missing.returncode == 1 and "does not exist" in missing.stderr
