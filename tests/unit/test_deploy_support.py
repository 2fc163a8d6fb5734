"""Shared helpers of the deploy tests (no tests here): the CLI's commands and IOC_* names."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic_settings import BaseSettings

REPO = Path(__file__).resolve().parents[2]
SOURCES = ("connectors", "streams")


def cli_commands() -> set[str]:
    """``iocstream`` commands: registered in streams/cli/main.py, or declared by a command
    module (``prog="iocstream <name>"``) that the lead registers."""
    from streams.cli.main import COMMANDS

    declared = set()
    for package in SOURCES:
        for path in (REPO / package).rglob("*.py"):
            declared |= set(re.findall(r'prog="iocstream ([a-z-]+)"', path.read_text()))
    return set(COMMANDS) | declared


def _settings_classes() -> list[type[BaseSettings]]:
    import importlib

    modules = [
        "connectors.settings",
        "connectors.kafka.topic_policy",
        "connectors.bridge.settings",
        "connectors.notify.service",
        "connectors.clickhouse.retention",
        "streams.app",
        "streams.alerting.cli",
        "streams.web.settings",
        "streams.stack.settings",
    ]
    found: list[type[BaseSettings]] = []
    for name in modules:
        module = importlib.import_module(name)
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, BaseSettings)
                and value is not BaseSettings
            ):
                found.append(value)
    return found


def known_ioc_variables() -> set[str]:
    """Every ``IOC_*`` environment variable a settings class reads, plus the names read
    directly from the environment (``os.environ``/``environ.get``) in the sources."""
    names: set[str] = set()
    for cls in _settings_classes():
        prefix = str(cls.model_config.get("env_prefix", ""))
        names |= {f"{prefix}{field}".upper() for field in cls.model_fields}
    for package in SOURCES:
        for path in (REPO / package).rglob("*.py"):
            names |= set(re.findall(r'"(IOC_[A-Z0-9_]+)"', path.read_text()))
    return names
