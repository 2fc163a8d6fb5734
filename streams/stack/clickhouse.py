"""The embedded ClickHouse: one process owns a chDB directory and serves ClickHouse's HTTP
interface on loopback (``python -m connectors.chserver``); everything else uses
clickhouse-connect over HTTP, as against a production server.

When ``IOC_CLICKHOUSE_URL`` names a host other than loopback, the stack does not start the
embedded engine: it only checks that the configured server answers ``/ping``.
"""

from __future__ import annotations

import sys
import urllib.request
from urllib.parse import urlsplit

from connectors.settings import ClickHouseSettings
from streams.stack.process import ManagedProcess
from streams.stack.settings import StackSettings

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


class ClickHouseService:
    """The embedded ClickHouse engine behind its HTTP endpoint."""

    name = "clickhouse"

    def __init__(self, stack: StackSettings, clickhouse: ClickHouseSettings) -> None:
        self.stack = stack
        self.settings = clickhouse
        parts = urlsplit(clickhouse.url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 8123
        self.dir = stack.data_dir.resolve() / "clickhouse"
        self.process = ManagedProcess(self.name, stack.run_dir, stack.log_dir, marker=str(self.dir))

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def embedded(self) -> bool:
        return self.host in LOOPBACK

    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        argv = [
            sys.executable,
            "-m",
            "connectors.chserver",
            "--data-dir",
            str(self.dir),
            "--host",
            self.host,
            "--port",
            str(self.port),
        ]
        env: dict[str, str] = {}
        if self.settings.password is not None:
            argv += ["--user", self.settings.username, "--password-env", "IOC_CLICKHOUSE_PASSWORD"]
        self.process.start(argv, env=env)

    def healthy(self) -> bool:
        url = f"{self.settings.url.rstrip('/')}/ping"
        with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 - configured URL
            return bool(resp.status == 200)
