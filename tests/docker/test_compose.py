"""The compose file validates against the compose specification's schema (vendored).

tests/docker/compose-spec.json is schema/compose-spec.json from the
compose-spec/compose-spec repository (Apache-2.0), commit 170098ba07d9.
"""

from __future__ import annotations

import copy
import json
import re

import jsonschema
import pytest

from tests.docker.manifests import COMPOSE_SCHEMA, PARLEY_IMAGES, compose

EXACT_TAG = re.compile(r":v?\d+\.\d+(\.\d+)?(-[a-z]+)?$|@sha256:[0-9a-f]{64}$")


def validator() -> jsonschema.protocols.Validator:
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    return jsonschema.Draft7Validator(schema)


def test_compose_file_validates() -> None:
    errors = [f"{list(e.path)}: {e.message}" for e in validator().iter_errors(compose())]
    assert errors == []


def test_the_schema_rejects_a_broken_compose_file() -> None:
    broken = copy.deepcopy(compose())
    broken["services"]["gateway"]["restart_policy"] = "always"
    with pytest.raises(jsonschema.ValidationError):
        validator().validate(broken)


def test_the_image_is_built_once_and_reused() -> None:
    services = compose()["services"]
    builders = [name for name, svc in services.items() if "build" in svc]
    assert builders == ["migrate"]
    parley = [name for name, svc in services.items() if svc.get("image") in PARLEY_IMAGES]
    assert {svc["image"] for name, svc in services.items() if name in parley} == {"parley:local"}
    assert {"gateway", "gateway-2", "worker", "relay", "topics", "migrate"} <= set(parley)
    for name in parley:
        if name != "migrate":
            assert services[name]["pull_policy"] == "never", name


def test_third_party_images_are_pinned() -> None:
    for name, svc in compose()["services"].items():
        if svc["image"] in PARLEY_IMAGES:
            continue
        assert EXACT_TAG.search(svc["image"]), f"{name}: {svc['image']} is a floating tag"


def test_there_is_a_redpanda_console() -> None:
    console = compose()["services"]["console"]
    assert "redpandadata/console" in console["image"]
    assert console["environment"]["KAFKA_BROKERS"] == "redpanda:9092"
