"""Static checks of deploy/compose (no container engine runs here, so what can be checked is
checked): the YAML parses; every long-running service has a health check and a restart
policy, every one-shot job a restart-on-failure policy; every image is pinned to a version;
no secret value is written in the file (only ``${VAR}`` references); every platform command
exists in the ``iocstream`` CLI; mounted files exist in the repository; every ``IOC_*`` variable
set is a setting the platform reads; the Dockerfile installs the way ``.ci/run`` does.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from tests.unit.test_deploy_support import REPO, cli_commands, known_ioc_variables

COMPOSE = REPO / "deploy" / "compose" / "compose.yaml"
SECRET_WORDS = re.compile(r"PASSWORD|SECRET|TOKEN|_KEY$|ROUTING_KEY", re.IGNORECASE)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found = compose["services"]
    assert isinstance(found, dict)
    return found


def _one_shot(service: dict[str, Any]) -> bool:
    return bool(service.get("labels", {}).get("iocstream.one-shot") == "true")


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    assert isinstance(env, dict), "environment must be a mapping"
    return {str(k): str(v) for k, v in env.items()}


def test_expected_services_are_there(services: dict[str, dict[str, Any]]) -> None:
    want = {
        "kafka-1", "kafka-2", "kafka-3", "mosquitto", "clickhouse", "grafana", "prometheus",
        "bridge-1", "bridge-2", "worker", "alerter", "notifier", "sink", "ingest", "web",
        "kafka-init", "db-migrate", "mosquitto-passwd",
    }  # fmt: skip
    assert want <= set(services)


def test_every_service_has_health_check_and_restart_policy(
    services: dict[str, dict[str, Any]],
) -> None:
    for name, service in services.items():
        if _one_shot(service):
            assert service.get("restart") == "on-failure", name
            continue
        assert service.get("restart") in ("unless-stopped", "always"), name
        check = service.get("healthcheck")
        assert isinstance(check, dict), f"{name} has no health check"
        assert not check.get("disable"), name
        assert check.get("test"), name
        assert check.get("interval"), name


def test_images_are_pinned(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        image = service.get("image")
        assert image, f"{name} has no image"
        repo, _, tag = image.rpartition(":")
        assert repo, f"{name}: image {image} has no tag"
        assert tag not in ("latest", "stable", ""), (name, image)
        assert re.search(r"\d", tag), (name, image)


def test_kafka_is_a_three_node_kraft_cluster(services: dict[str, dict[str, Any]]) -> None:
    nodes = [services[f"kafka-{i}"] for i in (1, 2, 3)]
    voters = {_env(n)["KAFKA_CONTROLLER_QUORUM_VOTERS"] for n in nodes}
    assert voters == {"1@kafka-1:9093,2@kafka-2:9093,3@kafka-3:9093"}
    assert [_env(n)["KAFKA_NODE_ID"] for n in nodes] == ["1", "2", "3"]
    assert all(_env(n)["KAFKA_PROCESS_ROLES"] == "broker,controller" for n in nodes)
    assert all(_env(n)["KAFKA_MIN_INSYNC_REPLICAS"] == "2" for n in nodes)
    image = nodes[0]["image"]
    pom = (REPO / "deploy" / "kafka" / "pom.xml").read_text()
    assert image.rpartition(":")[2] in pom, "compose Kafka differs from the version the tests run"


def test_no_secret_is_written_inline(services: dict[str, dict[str, Any]]) -> None:
    text = COMPOSE.read_text()
    for name, service in services.items():
        for key, value in _env(service).items():
            if SECRET_WORDS.search(key):
                assert value.startswith("${") or value == "", f"{name}: {key} is inline"
    for command in re.findall(r"(?m)^\s+test: (.*)$", text):
        # a password option must name a variable, never hold the value
        for value in re.findall(r"-P \\?\"?(\S+)", command):
            assert value.lstrip('\\"').startswith("$"), command
    example = (REPO / "deploy" / "compose" / ".env.example").read_text()
    for line in example.splitlines():
        key, _, value = line.partition("=")
        if SECRET_WORDS.search(key) and not key.startswith("#"):
            assert value.split("#")[0].strip() == "", f".env.example holds a value for {key}"
    ignored = (REPO / "deploy" / "compose" / ".gitignore").read_text().split()
    assert {".env", "secrets/"} <= set(ignored)


def test_platform_commands_exist_in_the_cli(services: dict[str, dict[str, Any]]) -> None:
    commands = cli_commands()
    for name, service in services.items():
        if not str(service.get("image", "")).startswith("iocstream:"):
            continue
        command = service.get("command")
        assert isinstance(command, list), f"{name}: command must be a list"
        assert command[0] in commands, f"{name}: `iocstream {command[0]}` does not exist"
        assert service["build"]["dockerfile"] == "deploy/Dockerfile"


def test_platform_variables_are_platform_settings(services: dict[str, dict[str, Any]]) -> None:
    known = known_ioc_variables()
    for name, service in services.items():
        for key in _env(service):
            if key.startswith("IOC_") and not key.startswith("IOC_GRAFANA_"):
                assert key in known, f"{name}: {key} is not a setting of the platform"
    for line in (REPO / "deploy" / "compose" / ".env.example").read_text().splitlines():
        key = line.partition("=")[0]  # commented names come from routes.yaml (*_env)
        if key.startswith("IOC_") and "=" in line:
            assert key in known, f".env.example: {key} is not a setting of the platform"


def test_mounted_files_exist(services: dict[str, dict[str, Any]]) -> None:
    base = COMPOSE.parent
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = str(volume).split(":")[0]
            if source.startswith("."):
                path = (base / source).resolve()
                if "secrets" in path.parts:
                    continue  # created by the operator, never committed
                assert path.exists(), f"{name}: {source} does not exist"


def test_mosquitto_requires_auth_and_restricts_devices_to_their_topics() -> None:
    conf = (REPO / "deploy" / "compose" / "mosquitto" / "mosquitto.conf").read_text()
    assert re.search(r"^allow_anonymous false$", conf, re.MULTILINE)
    assert "password_file /mosquitto/auth/passwd" in conf
    acl = (REPO / "deploy" / "compose" / "mosquitto" / "acl.conf").read_text()
    patterns = re.findall(r"^pattern (\w+) (\S+)$", acl, re.MULTILINE)
    assert patterns == [
        ("write", "ioc/+/+/%u/telemetry"),
        ("write", "ioc/+/+/%u/status"),
    ]


def test_dockerfile_installs_like_ci() -> None:
    dockerfile = (REPO / "deploy" / "Dockerfile").read_text()
    makefile = (REPO / "Makefile").read_text()
    assert "make install" in (REPO / ".ci" / "run").read_text()
    assert "python3.11 -m venv" in makefile
    assert "python3.11 -m venv" in dockerfile
    assert "install --quiet --upgrade pip" in makefile
    assert "install --quiet --upgrade pip" in dockerfile
    assert "install --quiet -e '.[dev]'" in makefile
    assert "pip install --quiet -e ." in dockerfile
    assert re.search(r"^FROM python:3\.11\.\d+-slim", dockerfile, re.MULTILINE)
    for path in re.findall(r"^COPY (\S+)", dockerfile, re.MULTILINE):
        assert (REPO / path).exists(), f"Dockerfile copies missing {path}"
    assert re.search(r"^USER \d+", dockerfile, re.MULTILINE), "the image must not run as root"
