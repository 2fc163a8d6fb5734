"""Entry point of the ``iocstream`` command.

Each command lives in its own module and is imported only when used, so ``iocstream --help``
stays fast. Logging is configured here, once, for every command.
"""

from __future__ import annotations

import faulthandler
import importlib
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence

from connectors import logsecrets

# command -> (module:function taking argv and returning an exit code, one-line description)
COMMANDS: dict[str, tuple[str, str]] = {
    "up": ("streams.cli.up:run", "run the whole platform locally and show live indicators"),
    "stack": ("streams.cli.stack:run", "start, stop or inspect Kafka, Mosquitto and ClickHouse"),
    "kafka": ("streams.cli.kafka:run", "create and check the platform's Kafka topics (kafka init)"),
    "db": ("streams.cli.db:run", "ClickHouse schema migrations and queries"),
    "clickhouse": ("streams.cli.clickhouse:run", "serve the embedded ClickHouse over HTTP"),
    "simulate": ("connectors.simulator.cli:run_simulate", "publish simulated city readings"),
    "bridge": ("connectors.bridge.cli:run", "MQTT -> Kafka bridge"),
    "worker": ("streams.worker:run_worker", "stream worker computing rolling indicators"),
    "sink": ("connectors.clickhouse.sink_cli:run", "Kafka -> ClickHouse sink"),
    "alerter": (
        "streams.alerting.cli:run",
        "evaluate alert rules on the live streams -> ioc.alerts",
    ),
    "alerts": (
        "streams.alerting.alerts_cli:run",
        "list/tail alerts; ack, assign, resolve, silence",
    ),
    "notifier": ("connectors.notify.cli:run", "send alert notifications (webhook, e-mail, chat)"),
    "web": ("streams.web.cli:run", "serve the live alert feed page for operators"),
    "silence": ("connectors.notify.cli:run_silence", "add, list and expire notification silences"),
    "bench": ("streams.bench.runner:run", "run the benchmarks and print ratios to baselines"),
    "ingest": ("connectors.ingest.cli:run", "validate city-system CloudEvents into ioc.events"),
    "simulate-events": (
        "connectors.simulator.events:run_events",
        "publish simulated city-system events (documents, applications, feedback)",
    ),
}


def _usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = [
        "usage: iocstream [--log-level LEVEL] <command> [options]",
        "",
        "iocstream: the streaming core of a city Intelligent Operations Centre.",
        "",
        "commands:",
    ]
    lines += [f"  {name.ljust(width)}  {desc}" for name, (_, desc) in COMMANDS.items()]
    lines += [
        "",
        "Run `iocstream <command> --help` for a command's options.",
        "Settings come from IOC_* environment variables (see README.md).",
    ]
    return "\n".join(lines)


def configure_logging(level: str) -> None:
    """Log to stderr with time, level, logger name and message (configured once), with the
    environment's secrets masked (:mod:`connectors.logsecrets`)."""
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("kafka", "aiokafka", "urllib3", "faust", "mode"):
        if level.upper() != "DEBUG":
            logging.getLogger(noisy).setLevel(logging.WARNING)
    logsecrets.install()  # libraries log their configuration at DEBUG, passwords included


def _resolve(target: str) -> Callable[[list[str]], int]:
    module_name, func_name = target.split(":")
    func: Callable[[list[str]], int] = getattr(importlib.import_module(module_name), func_name)
    return func


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``iocstream`` command; returns its exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    level = os.environ.get("IOC_LOG_LEVEL", "INFO")
    if len(args) >= 2 and args[0] == "--log-level":
        level, args = args[1], args[2:]
    if not args or args[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    command, rest = args[0], args[1:]
    if command not in COMMANDS:
        print(f"iocstream: unknown command {command!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    configure_logging(level)
    # `kill -USR1 <pid>` prints every thread's stack to stderr (the log): for a process
    # that looks stuck, without stopping it
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    try:
        return _resolve(COMMANDS[command][0])(rest)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
