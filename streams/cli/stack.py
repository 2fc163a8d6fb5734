"""``iocstream stack up | down | status``: the local Kafka, Mosquitto and ClickHouse."""

from __future__ import annotations

import argparse
import sys

from streams.stack.process import ServiceError
from streams.stack.stack import ServiceStatus, Stack


def _print(statuses: list[ServiceStatus]) -> None:
    for s in statuses:
        state = "healthy" if s.healthy else "DOWN"
        owner = f"pid {s.pid}" if s.pid else ("not started" if s.managed else "external")
        print(f"{s.name:<11} {s.address:<22} {state:<8} {owner:<12} log: {s.log_file}")


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="iocstream stack",
        description="Start, stop or inspect the local stack: Apache Kafka (KRaft), Mosquitto "
        "and the embedded ClickHouse, all on loopback. Data lives under IOC_DATA_DIR "
        "(default ./.data) and survives down/up.",
    )
    parser.add_argument("action", choices=["up", "down", "status"])
    args = parser.parse_args(argv)
    stack = Stack()
    if args.action == "up":
        try:
            statuses = stack.up()
        except ServiceError as exc:
            print(f"iocstream stack up failed: {exc}", file=sys.stderr)
            return 1
        _print(statuses)
        return 0
    if args.action == "down":
        stopped = stack.down()
        print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
        return 0
    statuses = stack.status()
    _print(statuses)
    return 0 if all(s.healthy for s in statuses) else 3
