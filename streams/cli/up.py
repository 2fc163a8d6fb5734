"""``iocstream up``: the whole platform on one machine, in one command.

Starts the local stack (Kafka, Mosquitto, embedded ClickHouse), creates topics, applies
migrations, then runs the platform's processes as children (:func:`children` is the one list
of them, in start order) and shows a live terminal view: per-district indicators (VN_AQI band,
river level against BĐ I–III, services on-time rate, devices reporting), the newest alerts (from
the web page's API) and throughput. It prints the web page's URL and access token: the token is
``IOC_WEB_TOKEN`` if set, otherwise a fresh random one for this run, handed to the web child
only through its environment.

Ctrl-C (or SIGTERM) stops the children in reverse order, then the stack services this command
started; services that were already running before are left running. A child whose command is
not (yet) registered in ``streams.cli.main.COMMANDS`` is skipped with a note.
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from clickhouse_connect.driver.client import Client
from rich.console import Console
from rich.live import Live

from connectors.clickhouse.client import connect
from connectors.clickhouse.migrate import migrate
from connectors.kafka.admin import ensure_topics, platform_topics
from connectors.registry import Registry
from connectors.settings import ClickHouseSettings, KafkaSettings, TopicSettings
from streams.cli.db import load_dimensions
from streams.flood import load_flood_levels
from streams.stack.process import ServiceError
from streams.stack.stack import Stack
from streams.web.settings import WebSettings
from streams.web.terminal import Throughput, render
from streams.web.tiles import TileSource

log = logging.getLogger(__name__)

THROUGHPUT_SQL = """
SELECT countIf(receive_time >= now64(3) - INTERVAL 1 MINUTE) / 60 AS per_second,
       dateDiff('millisecond', max(receive_time), now64(3)) / 1000 AS lag_s,
       count() AS day
FROM readings
WHERE receive_time >= now64(3) - INTERVAL 1 DAY
"""
REFRESH_S = 2.0


@dataclass(frozen=True)
class Child:
    """One process ``iocstream up`` runs: an ``iocstream`` command and extra environment."""

    name: str
    command: list[str]
    env: Mapping[str, str] = field(default_factory=dict)


def children(args: argparse.Namespace, web_token: str, web_port: int) -> list[Child]:
    """Every process of the platform, in start order (stopped in reverse). Extend here."""
    sim = [
        "simulate",
        "--devices",
        str(args.devices),
        "--interval",
        str(args.interval),
        "--rate",
        str(args.rate),
        "--realtime",
        "--progress",
        "log",
    ]
    out = [
        Child("bridge", ["bridge"]),
        Child("worker", ["worker"]),
        Child("sink", ["sink"]),
        Child("alerter", ["alerter"]),
        Child("notifier", ["notifier"]),
        Child("web", ["web", "--port", str(web_port)], {"IOC_WEB_TOKEN": web_token}),
    ]
    if not args.no_simulator:
        out.append(Child("simulator", sim))
    return out


def _registered(command: str) -> bool:
    from streams.cli.main import COMMANDS

    return command in COMMANDS


def _throughput(client: Client) -> Throughput:
    try:
        rows = client.query(THROUGHPUT_SQL).result_rows
    except Exception:  # noqa: BLE001  # the view keeps running while ClickHouse restarts
        return Throughput(None, None)
    if not rows or not rows[0][2]:
        return Throughput(0.0, None)
    per_second, lag_s, _day = rows[0]
    return Throughput(float(per_second), max(float(lag_s), 0.0))


def _alerts(url: str, token: str) -> list[dict[str, Any]] | None:
    request = urllib.request.Request(  # noqa: S310  # our own loopback URL
        f"{url}api/alerts", headers={"Authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=2) as resp:  # noqa: S310
            alerts: list[dict[str, Any]] = orjson.loads(resp.read())["alerts"]
            return alerts
    except (OSError, ValueError, KeyError):
        return None


def _status(procs: Mapping[str, subprocess.Popen[bytes]]) -> dict[str, str]:
    return {n: "up" if p.poll() is None else f"exit {p.returncode}" for n, p in procs.items()}


def _start(
    plan: Sequence[Child], log_dir: Path, console: Console
) -> dict[str, subprocess.Popen[bytes]]:
    me = [sys.executable, "-m", "streams.cli.main"]
    procs: dict[str, subprocess.Popen[bytes]] = {}
    for child in plan:
        if not _registered(child.command[0]):
            console.print(f"[yellow]skipping {child.name}[/]: `iocstream {child.command[0]}` "
                          "is not available in this version")  # fmt: skip
            continue
        path = log_dir / f"{child.name}.log"
        with path.open("ab") as out:
            procs[child.name] = subprocess.Popen(
                [*me, *child.command],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **child.env},
            )
        console.print(f"started {child.name} (pid {procs[child.name].pid}), log {path}")
    return procs


def _stop(procs: dict[str, subprocess.Popen[bytes]], console: Console) -> None:
    for proc in reversed(procs.values()):
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for name, proc in procs.items():
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            console.print(f"{name} did not stop in 30 s; killing it")
            proc.kill()
            proc.wait()


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="iocstream up",
        description="Run the stack and every platform process locally (bridge, worker, sink, "
        "alerter, notifier, web page, simulator) and show live indicators, alerts and "
        "throughput. Prints the web page's URL and token. Ctrl-C stops everything it started.",
    )
    parser.add_argument("--devices", type=int, default=12, help="simulated stations")
    parser.add_argument(
        "--interval", type=float, default=10.0, help="seconds between a station's readings"
    )
    parser.add_argument("--rate", type=float, default=12.0, help="simulated messages/s at most")
    parser.add_argument("--no-simulator", action="store_true")
    parser.add_argument(
        "--logs",
        type=Path,
        default=None,
        help="directory for the children's logs (default <data dir>/logs)",
    )
    args = parser.parse_args(argv)

    console = Console()
    stack = Stack()
    already = {s.name for s in stack.status() if s.pid}
    try:
        with console.status("starting Kafka, Mosquitto and ClickHouse..."):
            stack.up()
            ensure_topics(KafkaSettings(), platform_topics(TopicSettings()))
            ch = ClickHouseSettings()
            migrate(connect(ch, database=None), ch.database)
            load_dimensions(connect(ch))  # devices and flood levels for the views
    except (ServiceError, ValueError) as exc:
        console.print(f"[red]iocstream up failed:[/red] {exc}")
        return 1
    web = WebSettings()
    token = web.token.get_secret_value() if web.token else secrets.token_urlsafe(24)
    url = f"http://127.0.0.1:{web.port}/"
    log_dir = args.logs or stack.settings.log_dir
    log_dir.mkdir(parents=True, exist_ok=True)
    procs = _start(children(args, token, web.port), log_dir, console)
    console.print(f"[bold]web page:[/] {url}#token={token}  (token: {token})")

    stopping = False

    def stop(_signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    client = connect(ClickHouseSettings())
    tiles = TileSource(
        lambda sql, params: client.query(sql, parameters=dict(params)).result_rows,
        Registry.load_default(),
        load_flood_levels(),
    )

    def district_tiles() -> list[dict[str, Any]]:
        try:
            return tiles.tiles()
        except Exception:  # noqa: BLE001  # ClickHouse unreachable: show empty tiles, retry
            return []

    def screen() -> Any:
        return render(
            url=url,
            token=token,
            children=_status(procs),
            tiles=district_tiles(),
            alerts=_alerts(url, token),
            throughput=_throughput(client),
        )

    try:
        with Live(screen(), console=console, refresh_per_second=1, screen=False) as live:
            while not stopping:
                deadline = time.monotonic() + REFRESH_S
                while not stopping and time.monotonic() < deadline:
                    time.sleep(0.1)
                if not stopping:
                    live.update(screen())
    finally:
        console.print("stopping...")
        client.close()
        _stop(procs, console)
        for service in reversed(stack.services):
            if service.name not in already:
                service.process.stop()
        console.print("stopped.")
    return 0
