"""``iocstream web``: serve the live alert feed page.

Reads ``IOC_WEB_*`` (:class:`streams.web.settings.WebSettings`; ``IOC_WEB_TOKEN`` is
required), ``IOC_KAFKA_*``, ``IOC_TOPIC_*``, ``IOC_CLICKHOUSE_*`` and the notifier's
``IOC_NOTIFY_SILENCES_TOPIC`` (the silences the API shows and writes; created compacted at
start exactly as the notifier creates it). The topics can also be given as options (tests use
uuid-named topics). SIGTERM or Ctrl-C stops it cleanly: open streams end, the producers flush,
the consumers close.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any

from aiohttp import web

from connectors.kafka.admin import ensure_topics
from connectors.metrics import Metrics, serve
from connectors.notify.service import NotifierSettings
from connectors.notify.silences import silences_topic_spec
from connectors.registry import Registry
from connectors.settings import ClickHouseSettings, KafkaSettings, TopicSettings
from streams.flood import DEFAULT_FLOOD_LEVELS_PATH, load_flood_levels
from streams.web.actions import ActionPublisher
from streams.web.app import WebContext, make_runner
from streams.web.book import AlertBook
from streams.web.feed import AlertFeed, aiokafka_options
from streams.web.settings import WebSettings
from streams.web.silence_store import SilenceFollower
from streams.web.tilecache import TileCache

log = logging.getLogger(__name__)


def _parser(
    settings: WebSettings, topics: TopicSettings, silences_topic: str
) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="iocstream web",
        description="Serve the live alert feed: alerts as they change (SSE), their history, "
        "operator actions, silences and indicator tiles per district. Needs IOC_WEB_TOKEN.",
    )
    parser.add_argument("--host", default=settings.host, help="listen address (IOC_WEB_HOST)")
    parser.add_argument("--port", type=int, default=settings.port, help="HTTP port (IOC_WEB_PORT)")
    parser.add_argument(
        "--alerts-topic", default=topics.alerts, help="alert events topic (IOC_TOPIC_ALERTS)"
    )
    parser.add_argument(
        "--actions-topic",
        default=topics.alert_actions,
        help="operator actions topic (IOC_TOPIC_ALERT_ACTIONS)",
    )
    parser.add_argument(
        "--silences-topic",
        default=silences_topic,
        help="silences topic, shared with the notifier and `iocstream silence` "
        "(IOC_NOTIFY_SILENCES_TOPIC)",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=settings.metrics_port,
        help="Prometheus /metrics port, 0 for none (IOC_WEB_METRICS_PORT)",
    )
    parser.add_argument(
        "--registry", type=Path, default=None, help="device registry YAML (default: built in)"
    )
    parser.add_argument(
        "--flood-levels", type=Path, default=DEFAULT_FLOOD_LEVELS_PATH, help="flood levels YAML"
    )
    return parser


async def serve_web(
    ctx: WebContext,
    *,
    host: str,
    port: int,
    stop: asyncio.Event,
) -> None:
    """Run the app until ``stop`` is set."""
    runner = make_runner(ctx)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        for address in runner.addresses:
            log.info("alert feed page on http://%s:%s/", *address[:2])
        await stop.wait()
    finally:
        log.info("web server stopping")
        await runner.cleanup()


def _ensure_silences_topic(topic: str) -> None:
    """Create the silences topic if missing, with the notifier's own spec (compacted)."""
    ensure_topics(KafkaSettings(), [silences_topic_spec(topic)])


def build_context(
    settings: WebSettings,
    *,
    alerts_topic: str,
    actions_topic: str,
    metrics: Metrics,
    registry: Registry,
    flood_levels: Mapping[str, Any],
    silences_topic: str | None = None,
) -> WebContext:
    """The production context: Kafka feed and producers, silences, ClickHouse tiles.

    ``silences_topic`` defaults to the notifier's (``IOC_NOTIFY_SILENCES_TOPIC``).
    """
    if settings.token is None or not settings.token.get_secret_value():
        raise ValueError("IOC_WEB_TOKEN is not set: the page needs an access token")
    kafka = aiokafka_options(KafkaSettings())
    book = AlertBook(
        history_per_alert=settings.history_per_alert, recent_events=settings.recent_events
    )
    feed = AlertFeed(alerts_topic, kafka, book, metrics)
    publisher = ActionPublisher(actions_topic, kafka)
    silences_topic = silences_topic or NotifierSettings().silences_topic
    silences = SilenceFollower(
        silences_topic, kafka, metrics, ensure_topic=partial(_ensure_silences_topic, silences_topic)
    )
    tiles = TileCache(
        ClickHouseSettings(), registry, flood_levels, metrics, refresh_s=settings.tiles_refresh_s
    )
    return WebContext(
        token=settings.token.get_secret_value(),
        feed=feed,
        publisher=publisher,
        metrics=metrics,
        tiles=tiles.get,
        services=[feed, publisher, silences, tiles],
        silences=silences,
    )


def run(argv: list[str]) -> int:
    """Entry point of ``iocstream web``."""
    settings = WebSettings()
    args = _parser(settings, TopicSettings(), NotifierSettings().silences_topic).parse_args(argv)
    if settings.token is None or not settings.token.get_secret_value():
        log.error("IOC_WEB_TOKEN is not set: the page needs an access token")
        return 2
    registry = Registry.load(args.registry) if args.registry else Registry.load_default()
    metrics = Metrics()
    try:
        ctx = build_context(
            settings,
            alerts_topic=args.alerts_topic,
            actions_topic=args.actions_topic,
            metrics=metrics,
            registry=registry,
            flood_levels=load_flood_levels(args.flood_levels),
            silences_topic=args.silences_topic,
        )
    except ValueError as exc:
        log.error("%s", exc)
        return 2
    log.info(
        "web settings %s; alerts from %s, actions to %s, silences on %s",
        settings.redacted(),
        args.alerts_topic,
        args.actions_topic,
        args.silences_topic,
    )
    serve(args.metrics_port)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve_web(ctx, host=args.host, port=args.port, stop=stop)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
    return 0
