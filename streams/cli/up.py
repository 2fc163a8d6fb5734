"""``iocstream up``: the whole platform on one machine, in one command.

Starts the local stack (Kafka, Mosquitto, embedded ClickHouse), creates topics, applies
migrations, then runs the bridge, the worker, the sink and the city simulator as child
processes, and shows the newest indicator rows as they land in ClickHouse. Ctrl-C (or
SIGTERM) stops the children, then the stack services this command started; services that
were already running before are left running.
"""

from __future__ import annotations

import argparse
import logging
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from connectors.clickhouse.client import connect
from connectors.clickhouse.migrate import migrate
from connectors.kafka.admin import ensure_topics, platform_topics
from connectors.settings import ClickHouseSettings, KafkaSettings, TopicSettings
from streams.stack.process import ServiceError
from streams.stack.stack import Stack

log = logging.getLogger(__name__)

LATEST = """
SELECT window_start, device_id, ward, metric, count, round(mean, 1), round(min, 1),
       round(max, 1)
FROM indicator_windows FINAL
ORDER BY window_start DESC, device_id, metric
LIMIT {limit:UInt32}
"""


def _children(args: argparse.Namespace) -> dict[str, list[str]]:
    me = [sys.executable, "-m", "streams.cli.main"]
    sim = [
        *me,
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
    return {
        "bridge": [*me, "bridge"],
        "worker": [*me, "worker"],
        "sink": [*me, "sink"],
        **({} if args.no_simulator else {"simulator": sim}),
    }


def _table(rows: list[tuple[Any, ...]], procs: dict[str, subprocess.Popen[bytes]]) -> Table:
    alive = ", ".join(
        f"{n}:{'up' if p.poll() is None else f'exit {p.returncode}'}" for n, p in procs.items()
    )
    table = Table(title=f"iocstream: latest 1-minute indicators  ({alive})")
    for col in ("window (UTC)", "device", "ward", "metric", "n", "mean", "min", "max"):
        table.add_column(col)
    for row in rows:
        table.add_row(*(str(v) for v in row))
    return table


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="iocstream up",
        description="Run the stack, bridge, worker, sink and simulator locally and show live "
        "indicators. Ctrl-C stops everything it started.",
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
    except (ServiceError, ValueError) as exc:
        console.print(f"[red]iocstream up failed:[/red] {exc}")
        return 1
    log_dir = args.logs or stack.settings.log_dir
    log_dir.mkdir(parents=True, exist_ok=True)
    procs: dict[str, subprocess.Popen[bytes]] = {}
    for name, argv_ in _children(args).items():
        with (log_dir / f"{name}.log").open("ab") as out:
            procs[name] = subprocess.Popen(argv_, stdout=out, stderr=subprocess.STDOUT)
        console.print(f"started {name} (pid {procs[name].pid}), log {log_dir / f'{name}.log'}")

    stopping = False

    def stop(_signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    client = connect(ClickHouseSettings())
    try:
        with Live(_table([], procs), console=console, refresh_per_second=1) as live:
            while not stopping:
                rows = [
                    tuple(r) for r in client.query(LATEST, parameters={"limit": 15}).result_rows
                ]
                live.update(_table(rows, procs))
                for _ in range(20):
                    if stopping:
                        break
                    time.sleep(0.1)
    finally:
        console.print("stopping...")
        for proc in reversed(procs.values()):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for name, proc in procs.items():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                console.print(f"{name} did not stop in 30 s; killing it")
                proc.kill()
        for service in reversed(stack.services):
            if service.name not in already:
                service.process.stop()
        console.print("stopped.")
    return 0
