"""Static checks of deploy/kubernetes (no cluster runs here): every manifest parses (multi-doc
YAML); every workload has resource requests, readiness and liveness probes on a port it
declares, selector labels that match its pod labels, the platform image and an existing
``iocstream`` command; the worker HPA targets the worker Deployment and never exceeds the
configured partition count (base and overlay); ConfigMaps are generated from the repository's
rule and registry files; secrets are only referenced, never committed; every ``IOC_*`` name is
a platform setting.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.test_deploy_support import REPO, cli_commands, known_ioc_variables

KUBE = REPO / "deploy" / "kubernetes"
BASE = KUBE / "base"
OVERLAY = KUBE / "overlays" / "example"
WORKLOADS = ("Deployment", "StatefulSet", "Job")
NAME = "app.kubernetes.io/name"


def _docs(directory: Path) -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    docs: list[dict[str, Any]] = []
    for resource in kustomization.get("resources", []):
        path = directory / resource
        if path.is_dir():
            continue
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


@pytest.fixture(scope="module")
def base() -> list[dict[str, Any]]:
    return _docs(BASE)


@pytest.fixture(scope="module")
def kustomization() -> dict[str, Any]:
    data = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    assert isinstance(data, dict)
    return data


def _config_literals(kustomization: dict[str, Any]) -> dict[str, str]:
    gen = next(g for g in kustomization["configMapGenerator"] if g["name"] == "iocstream-config")
    return dict(item.split("=", 1) for item in gen["literals"])


def _pod(doc: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = doc["spec"]["template"]["spec"]
    return spec


def _probe_port(probe: dict[str, Any]) -> int:
    if "httpGet" in probe:
        return int(probe["httpGet"]["port"])
    url = next(a for a in probe["exec"]["command"] if str(a).startswith("http://"))
    match = re.match(r"http://127\.0\.0\.1:(\d+)/", url)
    assert match, url
    return int(match.group(1))


def test_every_manifest_parses_and_all_files_are_listed() -> None:
    for directory in (BASE, OVERLAY):
        listed = set(yaml.safe_load((directory / "kustomization.yaml").read_text())["resources"])
        for path in directory.glob("*.yaml"):
            docs = list(yaml.safe_load_all(path.read_text()))
            assert docs, path
            if path.name != "kustomization.yaml":
                assert path.name in listed, f"{path} is not in its kustomization"
        assert all((directory / r).exists() for r in listed)


def test_workloads_have_resources_probes_and_consistent_labels(base: list[dict[str, Any]]) -> None:
    commands = cli_commands()
    workloads = [d for d in base if d["kind"] in WORKLOADS]
    assert {d["metadata"]["labels"][NAME] for d in workloads} >= {
        "bridge", "worker", "alerter", "notifier", "sink", "ingest", "web", "kafka-init",
        "db-migrate",
    }  # fmt: skip
    for doc in workloads:
        name = doc["metadata"]["labels"][NAME]
        assert doc["metadata"]["name"] == f"iocstream-{name}"
        template_labels = doc["spec"]["template"]["metadata"]["labels"]
        assert template_labels[NAME] == name
        if doc["kind"] != "Job":
            assert doc["spec"]["selector"]["matchLabels"] == {NAME: name}
        pod = _pod(doc)
        assert pod["securityContext"]["runAsNonRoot"] is True
        for container in pod["containers"]:
            assert container["image"] == "iocstream", name
            assert container["args"][0] in commands, (
                f"{name}: no `iocstream {container['args'][0]}`"
            )
            requests = container["resources"]["requests"]
            assert requests.get("cpu"), name
            assert requests.get("memory"), name
            assert container["resources"]["limits"].get("memory"), name
            if doc["kind"] == "Job":
                continue
            ports = {p["containerPort"] for p in container["ports"]}
            for kind in ("readinessProbe", "livenessProbe"):
                assert _probe_port(container[kind]) in ports, f"{name}: {kind} port"
            mounts = {m["name"] for m in container.get("volumeMounts", [])}
            volumes = {v["name"] for v in pod.get("volumes", [])}
            assert mounts <= volumes, name


def test_probes_use_the_documented_ports(base: list[dict[str, Any]]) -> None:
    ports = {
        d["metadata"]["labels"][NAME]: _probe_port(_pod(d)["containers"][0]["readinessProbe"])
        for d in base
        if d["kind"] in ("Deployment", "StatefulSet")
    }
    assert ports["bridge"] == 9401
    assert ports["sink"] == 9402
    assert ports["worker"] == 6066  # Faust's web server (IOC_WORKER_WEB_PORT)
    worker = next(
        d for d in base if d["kind"] == "Deployment" and d["metadata"]["name"] == "iocstream-worker"
    )
    env = {e["name"]: e.get("value") for e in _pod(worker)["containers"][0]["env"]}
    assert env["IOC_WORKER_WEB_PORT"] == "6066"


def test_worker_hpa_stops_at_the_partition_count(
    base: list[dict[str, Any]], kustomization: dict[str, Any]
) -> None:
    hpa = next(d for d in base if d["kind"] == "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "iocstream-worker",
    }
    partitions = int(_config_literals(kustomization)["IOC_TOPIC_PARTITIONS"])
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"] <= partitions
    worker = next(
        d for d in base if d["metadata"]["name"] == "iocstream-worker" and d["kind"] == "Deployment"
    )
    assert "replicas" not in worker["spec"], "the HPA owns the worker replica count"

    overlay = yaml.safe_load((OVERLAY / "kustomization.yaml").read_text())
    merged = next(g for g in overlay["configMapGenerator"] if g["name"] == "iocstream-config")
    overlay_partitions = int(
        dict(i.split("=", 1) for i in merged["literals"])["IOC_TOPIC_PARTITIONS"]
    )
    patched = [
        yaml.safe_load(p["patch"])
        for p in overlay["patches"]
        if p["target"]["kind"] == "HorizontalPodAutoscaler"
    ]
    max_replicas = [
        op["value"] for ops in patched for op in ops if op["path"] == "/spec/maxReplicas"
    ]
    assert max_replicas == [overlay_partitions]


def test_config_maps_come_from_the_repository_files(kustomization: dict[str, Any]) -> None:
    generated = {g["name"]: g for g in kustomization["configMapGenerator"]}
    files = {
        name: [f.split("=", 1)[1] for f in generated[name]["files"]]
        for name in ("iocstream-alert-rules", "iocstream-devices")
    }
    assert "../../alerts/rules.yaml" in files["iocstream-alert-rules"]
    assert "../../devices.yaml" in files["iocstream-devices"]
    for paths in files.values():
        for path in paths:
            assert (BASE / path).resolve().is_file(), path
    literals = _config_literals(kustomization)
    assert literals["IOC_ALERTER_RULES"] == "/etc/iocstream/alerts/rules.yaml"
    assert literals["IOC_REGISTRY_PATH"] == "/etc/iocstream/devices/devices.yaml"


def test_secrets_are_referenced_never_committed(base: list[dict[str, Any]]) -> None:
    assert not [d for d in base if d["kind"] == "Secret"]
    for path in KUBE.rglob("*.yaml"):
        kustomization = (
            yaml.safe_load(path.read_text()) if path.name == "kustomization.yaml" else {}
        )
        assert not kustomization.get("secretGenerator"), path
    refs = set()
    for doc in base:
        if doc["kind"] not in WORKLOADS:
            continue
        for container in _pod(doc)["containers"]:
            for env in container.get("env", []):
                if "PASSWORD" in env["name"] or "TOKEN" in env["name"]:
                    assert "value" not in env, f"{env['name']} is inline"
                    refs.add(env["valueFrom"]["secretKeyRef"]["name"])
    assert refs == {"iocstream-secrets"}


def test_ioc_names_are_platform_settings(
    base: list[dict[str, Any]], kustomization: dict[str, Any]
) -> None:
    known = known_ioc_variables()
    names = set(_config_literals(kustomization))
    for doc in base:
        if doc["kind"] in WORKLOADS:
            for container in _pod(doc)["containers"]:
                names |= {e["name"] for e in container.get("env", [])}
    unknown = {n for n in names if n.startswith("IOC_") and n not in known}
    assert not unknown, f"not settings of the platform: {sorted(unknown)}"
