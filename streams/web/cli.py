"""``iocstream web``: serve the live alert feed page.

Reads ``IOC_WEB_*`` (:class:`streams.web.settings.WebSettings`; ``IOC_WEB_TOKEN`` is
required), ``IOC_KAFKA_*``, ``IOC_TOPIC_*`` and ``IOC_CLICKHOUSE_*``. The topics can also be
given as options (tests use uuid-named topics). SIGTERM or Ctrl-C stops it cleanly: open
streams end, the producer flushes, the consumer closes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aiohttp import web

from connectors.metrics import Metrics, serve
from connectors.registry import Registry
from connectors.settings import ClickHouseSettings, KafkaSettings, TopicSettings
from streams.flood import DEFAULT_FLOOD_LEVELS_PATH, load_flood_levels
from streams.web.actions import ActionPublisher
from streams.web.app import WebContext, make_runner
from streams.web.book import AlertBook
from streams.web.feed import AlertFeed, aiokafka_options
from streams.web.settings import WebSettings
from streams.web.tilecache import TileCache

log = logging.getLogger(__name__)


def _parser(settings: WebSettings, topics: TopicSettings) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="iocstream web",
        description="Serve the live alert feed: alerts as they change (SSE), their history, "
        "operator actions and indicator tiles per district. Needs IOC_WEB_TOKEN.",
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


def build_context(
    settings: WebSettings,
    *,
    alerts_topic: str,
    actions_topic: str,
    metrics: Metrics,
    registry: Registry,
    flood_levels: Mapping[str, Any],
) -> WebContext:
    """The production context: Kafka feed and producer, ClickHouse tiles."""
    if settings.token is None or not settings.token.get_secret_value():
        raise ValueError("IOC_WEB_TOKEN is not set: the page needs an access token")
    kafka = aiokafka_options(KafkaSettings())
    book = AlertBook(
        history_per_alert=settings.history_per_alert, recent_events=settings.recent_events
    )
    feed = AlertFeed(alerts_topic, kafka, book, metrics)
    publisher = ActionPublisher(actions_topic, kafka)
    tiles = TileCache(
        ClickHouseSettings(), registry, flood_levels, metrics, refresh_s=settings.tiles_refresh_s
    )
    return WebContext(
        token=settings.token.get_secret_value(),
        feed=feed,
        publisher=publisher,
        metrics=metrics,
        tiles=tiles.get,
        services=[feed, publisher, tiles],
    )


def run(argv: list[str]) -> int:
    """Entry point of ``iocstream web``."""
    settings = WebSettings()
    args = _parser(settings, TopicSettings()).parse_args(argv)
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
        )
    except ValueError as exc:
        log.error("%s", exc)
        return 2
    log.info(
        "web settings %s; alerts from %s, actions to %s",
        settings.redacted(),
        args.alerts_topic,
        args.actions_topic,
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
