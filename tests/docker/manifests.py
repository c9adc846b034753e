"""Loading the deployment files the tests check: compose, Kubernetes, monitoring."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
K8S = DOCKER / "k8s"
COMPOSE = DOCKER / "compose.yaml"
DOCKERFILE = DOCKER / "Dockerfile"
RULES = DOCKER / "monitoring" / "parley-rules.yaml"
DASHBOARD = DOCKER / "monitoring" / "grafana-dashboard.json"
COMPOSE_SCHEMA = Path(__file__).parent / "compose-spec.json"
PARLEY_IMAGES = ("parley", "parley:local")


def k8s_files() -> list[Path]:
    return sorted(K8S.rglob("*.yaml"))


def k8s_documents() -> list[tuple[Path, dict[str, Any]]]:
    documents = []
    for path in k8s_files():
        for document in yaml.safe_load_all(path.read_text()):
            if document:
                documents.append((path, document))
    return documents


def by_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for _, doc in k8s_documents() if doc["kind"] == kind}


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def pod_containers(document: dict[str, Any]) -> list[dict[str, Any]]:
    """Containers and init containers of a workload's pod template."""
    spec = document["spec"]["template"]["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


def configmap() -> dict[str, str]:
    data: dict[str, str] = by_kind("ConfigMap")["parley-config"]["data"]
    return data
