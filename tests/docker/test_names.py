"""The deployment files name only what the code has: commands, settings, ports, paths, topics."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from gateway.app import GRACEFUL_CLOSE, SHUTDOWN_BUDGET, create_app
from parley.cli import build_parser
from parley.settings import Settings
from streams.topics import parley_topics
from tests.docker.manifests import (
    DOCKER,
    DOCKERFILE,
    PARLEY_IMAGES,
    ROOT,
    by_kind,
    compose,
    configmap,
    k8s_documents,
    pod_containers,
)

TEST_SECRET = "s" * 48  # PARLEY_SECRET must be at least 32 bytes

# Not Parley settings: set for other programs in the same files.
FOREIGN_ENV = {"POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB", "KAFKA_BROKERS"}
FOREIGN_ENV |= {"POD_NAME", "POD_NAMESPACE"}


class RecordingEnv(dict[str, str]):
    """An environment that remembers every name Settings asked for."""

    def __init__(self) -> None:
        super().__init__(PARLEY_SECRET=TEST_SECRET)
        self.asked: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        self.asked.add(key)
        return super().get(key, default)

    def __getitem__(self, key: str) -> str:
        self.asked.add(key)
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        self.asked.add(str(key))
        return super().__contains__(key)


def settings_names() -> set[str]:
    env = RecordingEnv()
    Settings.from_env(env)
    return env.asked


def parley_commands() -> Iterator[tuple[str, list[str]]]:
    for name, svc in compose()["services"].items():
        if svc.get("image") in PARLEY_IMAGES:
            yield f"compose:{name}", svc["command"]
    for path, doc in k8s_documents():
        if doc["kind"] in {"Deployment", "StatefulSet", "Job"}:
            for container in pod_containers(doc):
                if container["image"] == "parley":
                    yield f"{path.name}:{container['name']}", container["command"]


def test_settings_are_all_documented_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    table = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", readme.split("## Settings", 1)[1]))
    missing = settings_names() - table
    assert not missing, f"settings missing from README's table: {sorted(missing)}"


def test_every_env_var_in_the_manifests_is_a_setting() -> None:
    known = settings_names()
    used: set[str] = set(configmap())
    for svc in compose()["services"].values():
        used |= set(svc.get("environment") or {})
    for _, doc in k8s_documents():
        if doc["kind"] in {"Deployment", "StatefulSet", "Job"}:
            for container in pod_containers(doc):
                used |= {var["name"] for var in container.get("env", [])}
    used |= set(by_kind("Secret")["parley-secrets"]["stringData"])
    assert used - FOREIGN_ENV <= known, sorted(used - FOREIGN_ENV - known)


@pytest.mark.parametrize("where_and_command", list(parley_commands()), ids=lambda p: p[0])
def test_every_command_exists(where_and_command: tuple[str, list[str]]) -> None:
    where, command = where_and_command
    if command[0] == "parley":
        build_parser().parse_args(command[1:])  # SystemExit on an unknown command
    else:
        assert command[:3] == ["faust", "-A", "streams.app"], where
        assert command[3] == "worker"


def test_faust_knows_the_operator_commands() -> None:
    env = {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1", "DATABASE_URL": "postgresql://x@y/z"}
    result = subprocess.run(
        [sys.executable, "-m", "faust", "-A", "streams.app", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**env, "PARLEY_SECRET": TEST_SECRET, "PATH": ""},
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    for name in ("topics-create", "topics-list", "topics-tail"):
        assert name in result.stdout
    assert "dead-letters-show" in result.stdout and "dead-letters-replay" in result.stdout


def test_ports_agree() -> None:
    port = int(configmap()["PARLEY_PORT"])
    assert f"EXPOSE {port}" in DOCKERFILE.read_text()
    gateway = by_kind("Deployment")["parley-gateway"]["spec"]["template"]["spec"]["containers"][0]
    assert gateway["ports"][0]["containerPort"] == port
    for name, env_name in (
        ("parley-worker", "PARLEY_WORKER_METRICS_PORT"),
        ("parley-relay", "PARLEY_RELAY_METRICS_PORT"),
    ):
        container = by_kind("Deployment")[name]["spec"]["template"]["spec"]["containers"][0]
        env = {var["name"]: var.get("value") for var in container["env"]}
        assert container["ports"][0]["containerPort"] == int(env[env_name]), name
        service = by_kind("Service")[f"{name}-metrics"]
        assert service["spec"]["ports"][0]["port"] == int(env[env_name])
    services = compose()["services"]
    for name, env_name in (
        ("worker", "PARLEY_WORKER_METRICS_PORT"),
        ("relay", "PARLEY_RELAY_METRICS_PORT"),
    ):
        port_value = services[name]["environment"][env_name]
        assert f"127.0.0.1:{port_value}/metrics" in " ".join(services[name]["healthcheck"]["test"])


def test_probe_paths_are_gateway_routes() -> None:
    app = create_app(Settings())
    routes = {getattr(route, "path", None) for route in app.other_asgi_app.routes}
    paths = set()
    for _, doc in k8s_documents():
        if doc["kind"] == "Deployment":
            for container in pod_containers(doc):
                for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                    if probe in container:
                        paths.add(container[probe]["httpGet"]["path"])
    assert paths and paths <= routes
    assert "/healthz" in DOCKERFILE.read_text()


def test_topic_names_match_the_code() -> None:
    settings = Settings()
    names = {spec.name for spec in parley_topics(settings)}
    assert names == {settings.visitor_topic, settings.agent_topic, settings.dead_letter_topic}
    docs = (DOCKER / "README.md").read_text()
    mentioned = set(re.findall(r"parley\.[a-z-]+(?:\.dead-letter)?", docs))
    assert names <= mentioned
    assert mentioned <= names, f"unknown topics in docker/README.md: {mentioned - names}"


def test_worker_autoscaling_is_capped_at_the_partitions() -> None:
    hpa = by_kind("HorizontalPodAutoscaler")["parley-worker"]
    assert hpa["spec"]["maxReplicas"] == int(configmap()["PARLEY_TOPIC_PARTITIONS"])
    for name in ("parley-gateway", "parley-worker"):
        assert "replicas" not in by_kind("Deployment")[name]["spec"], "the HPA owns replicas"


def test_gateway_shutdown_fits_the_grace_period() -> None:
    spec = by_kind("Deployment")["parley-gateway"]["spec"]["template"]["spec"]
    pre_stop = int(spec["containers"][0]["lifecycle"]["preStop"]["exec"]["command"][1])
    worst = pre_stop + GRACEFUL_CLOSE + SHUTDOWN_BUDGET + 1  # the last second: closing anyway
    assert worst + 5 <= spec["terminationGracePeriodSeconds"]
