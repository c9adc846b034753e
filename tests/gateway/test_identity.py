"""Impersonation: a uid is a UUID, bound once, never from a URL; signed when the project asks."""

from __future__ import annotations

import uuid

import pytest

from gateway import identity
from gateway.errors import GatewayError, InvalidPayload
from parley.settings import Settings
from persistence.directory import Directory, Project
from tests import clients
from tests.factories import uid
from tests.servers import gateway_in_process


@pytest.mark.parametrize(
    "value",
    ["1", "", "visitor-1", "x" * 100, 42, None, "00000000-0000-0000-0000-000000000000", "\u00b2"],
)
def test_a_uid_must_be_a_uuid(value: object) -> None:
    with pytest.raises(InvalidPayload):
        identity.visitor_uid(value)


def test_a_uuid_is_accepted_in_canonical_form() -> None:
    value = uuid.uuid4()
    assert identity.visitor_uid(str(value).upper()) == str(value)
    assert identity.visitor_uid(str(uuid.uuid1())) != ""  # any RFC 4122 version


def test_signatures_are_hmac_sha256_of_the_uid() -> None:
    secret, visitor = "s3cret", uid()
    signature = identity.sign(secret, visitor)
    identity.verify(secret=secret, uid=visitor, signature=signature)
    identity.verify(secret=secret, uid=visitor, signature=signature.upper())
    refused = {
        "identity_required": [(visitor, None), (None, signature)],
        "invalid_signature": [
            (visitor, identity.sign("other", visitor)),
            (visitor, identity.sign(secret, uid())),
            (visitor, "ÿ" * 64),  # non-ASCII compares, it does not raise
            (visitor, 12345),
            (visitor, signature[:-1]),
        ],
    }
    for code, cases in refused.items():
        for who, sig in cases:
            with pytest.raises(GatewayError) as raised:
                identity.verify(secret=secret, uid=who, signature=sig)
            assert raised.value.code == code, (who, sig)


@pytest.mark.parametrize("bad", ["1", "visitor-1", "not a uuid"])
async def test_guessable_uids_are_refused_at_connect_and_identify(
    gateway_url: str, project: Project, bad: str
) -> None:
    error = await clients.refused(gateway_url, auth={"projectId": project.id, "visitorUid": bad})
    assert error["code"] == "invalid_payload" and "UUID" in error["message"]
    widget = await clients.visitor(gateway_url, project.id, None)
    ack = await widget.call("identify", {"projectId": project.id, "visitorUid": bad})
    assert ack["ok"] is False and ack["error"]["code"] == "invalid_payload"
    await widget.close()


async def test_a_uid_in_the_query_string_is_refused(gateway_url: str, project: Project) -> None:
    error = await clients.refused(
        f"{gateway_url}?projectId={project.id}&visitorUid={uid()}", auth={}
    )
    assert error["code"] == "invalid_payload" and "auth" in error["message"]


async def test_identify_cannot_switch_the_uid_bound_at_connect(
    gateway_url: str, project: Project
) -> None:
    mine, theirs = uid(), uid()
    tab = await clients.visitor(gateway_url, project.id, mine)
    ack = await tab.call("identify", {"projectId": project.id, "visitorUid": theirs})
    assert ack["ok"] is False and ack["error"]["code"] == "forbidden"
    # Still bound to its own uid, and identify without a uid means "me".
    assert await tab.call("identify", {"projectId": project.id, "visitorUid": mine}) == {"ok": True}
    assert await tab.call("identify", {"lastSeq": 0}) == {"ok": True}
    await tab.close()


async def test_a_socket_without_a_uid_binds_one_with_its_first_identify(
    gateway_url: str, project: Project
) -> None:
    mine, theirs = uid(), uid()
    widget = await clients.visitor(gateway_url, project.id, None)
    ack = await widget.call("identify", {"projectId": project.id})
    assert ack["ok"] is False and ack["error"]["code"] == "invalid_payload"
    assert await widget.call("identify", {"projectId": project.id, "visitorUid": mine}) == {
        "ok": True
    }
    ack = await widget.call("identify", {"projectId": project.id, "visitorUid": theirs})
    assert ack["ok"] is False and ack["error"]["code"] == "forbidden"
    await widget.close()


async def test_a_verified_project_wants_a_valid_signature(
    settings: Settings, directory: Directory
) -> None:
    locked = await directory.create_project(name="Verified", require_identity=True)
    secret = locked.identity_secret
    assert secret is not None and len(secret) == 64
    visitor = uid()
    async with gateway_in_process(settings) as url:
        cases = {
            "identity_required": {"projectId": locked.id},
            "invalid_signature": {
                "projectId": locked.id,
                "visitorUid": visitor,
                "visitorSignature": identity.sign("a guess", visitor),
            },
        }
        for code, auth in cases.items():
            assert (await clients.refused(url, auth=auth))["code"] == code
        no_signature = {"projectId": locked.id, "visitorUid": visitor}
        assert (await clients.refused(url, auth=no_signature))["code"] == "identity_required"

        signed = socketio_visitor_auth(locked.id, visitor, identity.sign(secret, visitor))
        tab = await clients.visitor(url, locked.id, visitor, auth=signed)
        ack = await tab.call("sendMessage", {"content": "hi", "tempId": str(uuid.uuid4())})
        assert ack == {"ok": True}
        await tab.close()


async def test_turning_verification_on_and_rotating_the_secret(
    settings: Settings, directory: Directory, project: Project
) -> None:
    assert not project.require_identity
    on = await directory.set_identity_verification(project.id, required=True)
    assert on.require_identity and on.identity_secret == project.identity_secret
    rotated = await directory.identity_secret(project.id, rotate=True)
    assert rotated.identity_secret not in (None, project.identity_secret)
    shown = await directory.identity_secret(project.id)
    assert shown.identity_secret == rotated.identity_secret
    off = await directory.set_identity_verification(project.id, required=False)
    assert not off.require_identity


def socketio_visitor_auth(project_id: int, visitor: str, signature: str) -> dict[str, object]:
    return {"projectId": project_id, "visitorUid": visitor, "visitorSignature": signature}
