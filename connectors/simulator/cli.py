"""``iocstream simulate``: publish seeded air-quality readings for Long Xuyên over MQTT.

Exit codes: 0 every message acknowledged (also after SIGTERM); 1 broker unreachable or
refused, messages rejected or left unacknowledged; 2 bad arguments; 130 stopped by Ctrl-C
(after a clean shutdown: in-flight acks awaited briefly, ``offline`` statuses, disconnect).
A second Ctrl-C aborts at once.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import uuid
from datetime import UTC, datetime, timedelta
from types import FrameType
from typing import Any

import orjson

from connectors.simulator.encoding import FORMATS
from connectors.simulator.fleet import run_fleet
from connectors.simulator.model import default_devices
from connectors.simulator.progress import make_reporter
from connectors.simulator.publisher import PublisherConfig, PublishSummary
from connectors.simulator.runner import RunSpec

log = logging.getLogger(__name__)

EPILOG = """\
examples:
  iocstream simulate --devices 12 --count 60 --interval 60 --rate 50
      one simulated hour for 12 stations, as fast as 50 msg/s
  iocstream simulate --devices 12 --interval 10 --realtime
      live: each station reports every 10 s of wall-clock time until Ctrl-C
  iocstream simulate --devices 1000 --count 100 --rate 0 --progress none --json
      measure the maximum publish rate (prints a JSON summary with "rate")
  iocstream simulate --devices 1000 --count 100 --rate 20000 --workers 2
      20,000 msg/s over two processes
  iocstream simulate --devices 6 --count 30 --malformed 1 --seed 7 --start 2026-11-28T09:00+07:00

The broker comes from IOC_MQTT_URL (and IOC_MQTT_USERNAME, IOC_MQTT_PASSWORD,
IOC_MQTT_CA_FILE), unless --mqtt-url is given. Readings are deterministic from --seed,
--start, --interval and the devices: the same arguments publish the same values.
Topics: ioc/long-xuyen/air_quality/<device>/telemetry; retained online/offline on
.../status at start and end.

exit codes: 0 all acknowledged (also after SIGTERM), 1 broker unreachable/refused or
messages rejected/unacknowledged, 2 bad arguments, 130 Ctrl-C (after a clean stop).
"""


def _start(text: str) -> datetime:
    if text == "now":
        return datetime.now(UTC).replace(second=0, microsecond=0)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from exc
    if parsed.tzinfo is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} has no timezone; add Z or an offset such as +07:00"
        )
    return parsed


def default_start(now: datetime, interval: timedelta, realtime: bool) -> datetime:
    """``now`` floored to the minute, or in realtime mode to a multiple of ``interval``
    since the Unix epoch (so live readings land on round times: :00, :10, ...)."""
    if not realtime:
        return now.replace(second=0, microsecond=0)
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    return epoch + (now - epoch) // interval * interval


def _interval(text: str) -> timedelta:
    try:
        seconds = float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from exc
    ms = round(seconds * 1000)
    if not ms >= 1:
        raise argparse.ArgumentTypeError(f"interval must be at least 0.001 s, got {text!r}")
    return timedelta(milliseconds=ms)


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="iocstream simulate",
        description="Publish realistic, seeded air-quality readings (PM2.5, PM10, temperature, "
        "humidity) for monitoring stations aq-lx-001... in Long Xuyên's wards over MQTT "
        "(QoS 1), with the city's daily cycle in local time (UTC+7). Without --count or "
        "--duration it runs until Ctrl-C.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    what = p.add_argument_group("what to simulate")
    what.add_argument(
        "--devices", type=_non_negative, default=12, metavar="N", help="stations (default 12)"
    )
    what.add_argument(
        "--count", type=_non_negative, metavar="N", help="readings per station, then stop"
    )
    what.add_argument(
        "--duration",
        type=_positive_float,
        metavar="SECONDS",
        help="stop after this many wall-clock seconds",
    )
    what.add_argument(
        "--interval",
        type=_interval,
        default=timedelta(seconds=60),
        metavar="SECONDS",
        help="event time between a station's readings (default 60)",
    )
    what.add_argument(
        "--start",
        type=_start,
        default=None,
        help="event time of the first reading, ISO 8601 with offset, or 'now' "
        "(default: now floored to the minute; with --realtime, floored to the interval, "
        "so a live run starts with at most one reading per station)",
    )
    what.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    what.add_argument(
        "--format", choices=FORMATS, default="json", help="payload: ThingsBoard JSON or SenML"
    )
    what.add_argument(
        "--malformed",
        type=_non_negative,
        default=0,
        metavar="N",
        help="also send N broken-JSON payloads on valid device topics (dead-letter demo)",
    )
    how = p.add_argument_group("how to publish")
    how.add_argument(
        "--rate",
        type=float,
        default=100.0,
        help="messages per second (default 100; 0 = as fast as the broker acknowledges)",
    )
    how.add_argument(
        "--realtime",
        action="store_true",
        help="never publish a reading before its event time (live mode)",
    )
    how.add_argument(
        "--workers",
        type=_positive_int,
        default=1,
        help="publishing processes, each its own MQTT connection and a share of the devices "
        "and the rate (default 1; one process tops out near 15,000 msg/s)",
    )
    how.add_argument("--mqtt-url", help="broker URL (default: IOC_MQTT_URL)")
    how.add_argument(
        "--mqtt-version", type=int, choices=[5, 4], default=5, help="5 = MQTT 5, 4 = MQTT 3.1.1"
    )
    how.add_argument(
        "--client-id",
        default=None,
        help="MQTT client id (default iocstream-simulator-<random>; never the bridge's id)",
    )
    how.add_argument(
        "--max-inflight",
        type=int,
        default=1000,
        help="unacknowledged messages at most (capped by the broker's Receive Maximum)",
    )
    how.add_argument(
        "--no-status", action="store_true", help="do not publish retained online/offline"
    )
    how.add_argument(
        "--connect-timeout",
        type=_positive_float,
        default=30.0,
        metavar="SECONDS",
        help="give up when the broker is unreachable this long (default 30)",
    )
    how.add_argument(
        "--drain-timeout",
        type=_positive_float,
        default=30.0,
        metavar="SECONDS",
        help="how long to wait for the last PUBACKs (default 30)",
    )
    out = p.add_argument_group("output")
    out.add_argument(
        "--progress",
        choices=["auto", "rich", "log", "none"],
        default="auto",
        help="live bar on a terminal, log lines otherwise (default auto)",
    )
    out.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    return p


def _config(args: argparse.Namespace, parser: argparse.ArgumentParser) -> PublisherConfig:
    try:
        return PublisherConfig(
            client_id=args.client_id or f"iocstream-simulator-{uuid.uuid4().hex[:8]}",
            mqtt_version=args.mqtt_version,
            rate=args.rate,
            max_inflight=args.max_inflight,
            realtime=args.realtime,
            duration_s=args.duration,
            status=not args.no_status,
            connect_timeout_s=args.connect_timeout,
            drain_timeout_s=args.drain_timeout,
        )
    except ValueError as exc:
        parser.error(str(exc))


def _print_summary(summary: PublishSummary, as_json: bool) -> None:
    if as_json:
        print(orjson.dumps(summary.to_dict()).decode())
        return
    print(
        f"published {summary.published} ({summary.malformed} malformed), "
        f"acked {summary.acked}, failed {summary.failed}, unacked {summary.unacked}, "
        f"status {summary.status_acked}/{summary.status_published} acked, "
        f"{summary.elapsed_s:.2f} s, {summary.rate:.1f} msg/s"
        + (", interrupted" if summary.interrupted else "")
        + (f", error: {summary.error}" if summary.error else "")
    )


def run_simulate(argv: list[str] | None = None) -> int:
    """Run ``iocstream simulate`` with ``argv`` (default ``sys.argv[1:]``); the exit code."""
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    spec = RunSpec(
        devices=tuple(default_devices(args.devices)),
        start=args.start or default_start(datetime.now(UTC), args.interval, args.realtime),
        interval=args.interval,
        count=args.count,
        seed=args.seed,
        config=_config(args, parser),
        fmt=args.format,
        malformed=args.malformed,
        mqtt_url=args.mqtt_url,
    )
    stop = threading.Event()
    received: list[int] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        if received:
            raise KeyboardInterrupt
        received.append(signum)
        log.info("signal %d: finishing (Ctrl-C again to abort)", signum)
        stop.set()

    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, on_signal)
    try:
        log.info(
            "simulating %d devices from %s every %g s, seed %d, %s payloads",
            len(spec.devices),
            spec.start.isoformat(),
            spec.interval.total_seconds(),
            spec.seed,
            spec.fmt,
        )
        reporter = make_reporter(args.progress, spec.messages)
        summary = run_fleet(spec, args.workers, reporter, stop)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    _print_summary(summary, args.json)
    log.info("simulator summary: %s", summary.to_dict())
    if received and received[0] == signal.SIGINT:
        return 130
    return 0 if summary.ok else 1


if __name__ == "__main__":
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    sys.exit(run_simulate())
