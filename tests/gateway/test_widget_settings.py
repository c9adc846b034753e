"""The public settings call answers the project's settings, with CORS for its origins only."""

from __future__ import annotations

import httpx

from persistence.directory import Directory, Project
from persistence.widget_settings import WidgetSettingsStore
from tests import clients

SHOP = "https://shop.example"


def path(project_id: int) -> str:
    return f"/api/v1/public/projects/{project_id}/settings"


async def test_an_allowed_origin_reads_the_settings_with_cors(
    gateway_url: str, directory: Directory, engine: object
) -> None:
    project = await directory.create_project(name="Shop", origins=[SHOP])
    await WidgetSettingsStore(engine=engine).update(  # type: ignore[arg-type]
        project.id, {"theme": "dark", "headerText": "Shop help", "autoOpenDelay": 5}
    )
    async with httpx.AsyncClient(base_url=gateway_url) as client:
        answer = await client.get(path(project.id), headers={"Origin": SHOP})
    assert answer.status_code == 200
    assert answer.headers["access-control-allow-origin"] == SHOP
    assert "Origin" in answer.headers["vary"]
    body = answer.json()
    assert body == {
        "theme": "dark",
        "backgroundImageUrl": None,
        "backgroundOpacity": 1.0,
        "headerText": "Shop help",
        "position": "bottom-right",
        "fontFamily": None,
        "companyLogoUrl": None,
        "welcomeMessage": body["welcomeMessage"],
        "agentDisplayName": None,
        "offlineMessage": body["offlineMessage"],
        "autoOpenDelay": 5,
        "historyVisibility": "limit_to_active",
    }


async def test_another_origin_gets_no_settings_and_no_cors(
    gateway_url: str, directory: Directory
) -> None:
    project = await directory.create_project(name="Shop", origins=[SHOP])
    async with httpx.AsyncClient(base_url=gateway_url) as client:
        answer = await client.get(path(project.id), headers={"Origin": "https://evil.example"})
    assert answer.status_code == 403
    assert "access-control-allow-origin" not in answer.headers
    assert answer.json()["error"]["code"] == "forbidden"


async def test_a_project_without_origins_answers_any_origin(
    gateway_url: str, project: Project
) -> None:
    async with httpx.AsyncClient(base_url=gateway_url) as client:
        answer = await client.get(path(project.id), headers={"Origin": "https://any.example"})
        preflight = await client.options(
            path(project.id),
            headers={
                "Origin": "https://any.example",
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "x-widget",
            },
        )
    assert answer.status_code == 200
    assert answer.headers["access-control-allow-origin"] == "https://any.example"
    assert answer.json()["theme"] == "light"  # the defaults
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "https://any.example"
    assert "GET" in preflight.headers["access-control-allow-methods"]
    assert preflight.headers["access-control-allow-headers"] == "x-widget"


async def test_an_unknown_project_is_a_clean_404(gateway_url: str) -> None:
    async with httpx.AsyncClient(base_url=gateway_url) as client:
        missing = await client.get(path(999_999), headers={"Origin": SHOP})
        garbage = await client.get("/api/v1/public/projects/abc/settings")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    assert missing.headers["access-control-allow-origin"] == SHOP  # the widget can read why
    assert garbage.status_code == 404


async def test_submit_form_is_refused_cleanly(gateway_url: str, project: Project) -> None:
    visitor = await clients.visitor(gateway_url, project.id, "3f1c1f0e-8a43-4b53-9b55-1d7e7f0d2a11")
    try:
        ack = await visitor.call("submitForm", {"formId": 1, "answers": {"email": "a@b.c"}})
    finally:
        await visitor.close()
    assert ack["ok"] is False
    assert ack["error"]["code"] == "not_supported"
