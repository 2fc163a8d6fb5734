"""Silences through the web API against real Kafka, shared with ``iocstream silence``.

The web server runs in process with the production context (:func:`streams.web.cli.
build_context`) on a uuid-named silences topic that it creates itself. Checks: the topic is
compacted; a silence POSTed to the API is on the topic (decoded by the notifier's own
``decode_silence``) and listed by the API and by the CLI; a silence the CLI adds appears in the
API; the API expires it and the CLI sees that; the CLI expires the API's silence and the API
sees that; a fresh store rebuilds both from the topic. Every wait is bounded; no timing is
asserted.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import ClientSession, web
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from prometheus_client import CollectorRegistry

from connectors.kafka.admin import TopicSpec, ensure_topics, read_topics
from connectors.metrics import Metrics
from connectors.notify.cli import run_silence
from connectors.notify.silences import Silence, decode_silence
from connectors.registry import Registry
from connectors.settings import KafkaSettings
from streams.flood import DEFAULT_FLOOD_LEVELS_PATH, load_flood_levels
from streams.web.app import make_runner
from streams.web.cli import build_context
from streams.web.feed import aiokafka_options
from streams.web.settings import WebSettings
from streams.web.silence_store import SilenceFollower

pytestmark = pytest.mark.integration

TOKEN = "silences-integration-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
WAIT_S = 30.0


def _topic_records(topic: str) -> list[Silence]:
    """Every silence version on the topic, in order (kafka-python, as the CLI reads it)."""
    consumer = KafkaConsumer(**KafkaSettings().client_options(), enable_auto_commit=False)
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        end = consumer.end_offsets([tp])[tp]
        found: list[Silence] = []
        deadline = time.monotonic() + WAIT_S
        while consumer.position(tp) < end and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                found.extend(decode_silence(r.value) for r in records)
        return found
    finally:
        consumer.close()


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    capsys.readouterr()
    assert run_silence(list(argv)) == 0
    return capsys.readouterr().out


async def _until(check: Callable[[], Awaitable[Any]], what: str) -> Any:
    deadline = time.monotonic() + WAIT_S
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"not seen within {WAIT_S:.0f} s: {what}")
        await asyncio.sleep(0.2)


def test_api_and_cli_share_silences(
    unique: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    alerts, actions, topic = (f"test-{n}-{unique}" for n in ("alerts", "actions", "silences"))
    ensure_topics(KafkaSettings(), [TopicSpec(alerts, 1, 1), TopicSpec(actions, 1, 1)])
    monkeypatch.setenv("IOC_NOTIFY_SILENCES_TOPIC", topic)  # where the CLI reads and writes
    metrics = Metrics(CollectorRegistry())
    ctx = build_context(
        WebSettings(token=TOKEN, tiles_refresh_s=600),
        alerts_topic=alerts,
        actions_topic=actions,
        metrics=metrics,
        registry=Registry.load_default(),
        flood_levels=load_flood_levels(DEFAULT_FLOOD_LEVELS_PATH),
        silences_topic=topic,
    )

    async def main() -> None:
        runner = make_runner(ctx)  # what `iocstream web` runs
        await runner.setup()
        try:
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            host, port = runner.addresses[0][:2]
            async with ClientSession(f"http://{host}:{port}", headers=AUTH) as http:
                await _scenario(http)
        finally:
            await runner.cleanup()

    async def listed(http: ClientSession, everything: bool = False) -> dict[str, dict[str, Any]]:
        async with http.get("/api/silences", params={"all": "1" if everything else "0"}) as r:
            assert r.status == 200
            data = await r.json()
        return {s["id"]: s for s in data["silences"]} if data["ready"] else {}

    async def _scenario(http: ClientSession) -> None:
        await _until(lambda: _ready(http), "the silence store read its topic")
        admin = KafkaAdminClient(**KafkaSettings().client_options())
        try:
            state = read_topics(admin, [topic], ["cleanup.policy"])[topic]
        finally:
            admin.close()
        assert state.config["cleanup.policy"] == "compact"

        # API → topic → CLI
        body = {
            "matchers": ["alertname=river_level_alarm", 'district="my-hoa"'],
            "duration_minutes": 120,
            "operator": "Nguyễn Văn An",
            "comment": "đê đang gia cố",
        }
        async with http.post("/api/silences", json=body) as r:
            assert r.status == 201, await r.text()
            api_id = (await r.json())["id"]
        assert (await listed(http))[api_id]["state"] == "active"
        on_topic = await asyncio.to_thread(_topic_records, topic)
        assert [s.id for s in on_topic] == [api_id]
        assert [str(m) for m in on_topic[0].matchers] == [
            'alertname="river_level_alarm"',
            'district="my-hoa"',
        ]
        assert (on_topic[0].created_by, on_topic[0].comment) == ("Nguyễn Văn An", "đê đang gia cố")
        assert api_id in await asyncio.to_thread(_cli, capsys, "list")

        # CLI → API
        out = await asyncio.to_thread(
            _cli, capsys, "add", "district=long-xuyen", "--duration", "1h", "--author", "cli-op"
        )
        cli_id = out.strip()

        async def cli_silence_listed() -> bool:
            return cli_id in await listed(http)

        await _until(cli_silence_listed, "the CLI's silence in GET /api/silences")
        assert (await listed(http))[cli_id]["created_by"] == "cli-op"

        # API expires the CLI's silence; the CLI sees it ended
        async with http.delete(f"/api/silences/{cli_id}", params={"operator": "Bình"}) as r:
            assert r.status == 202, await r.text()
        async with http.delete("/api/silences/no-such-id", params={"operator": "Bình"}) as r:
            assert r.status == 404
        assert cli_id not in await listed(http)
        assert (await listed(http, everything=True))[cli_id]["state"] == "expired"
        cli_list = await asyncio.to_thread(_cli, capsys, "list", "--all")
        (line,) = [x for x in cli_list.splitlines() if x.startswith(cli_id)]
        assert "expired" in line
        assert "(expired by Bình)" in line

        # CLI expires the API's silence; the API sees it ended
        await asyncio.to_thread(_cli, capsys, "expire", api_id, "--author", "cli-op")

        async def api_silence_gone() -> bool:
            return api_id not in await listed(http)

        await _until(api_silence_gone, "the CLI's expiry in GET /api/silences")

        # a fresh store rebuilds every silence from the topic
        fresh = SilenceFollower(topic, aiokafka_options(KafkaSettings()), metrics)
        await fresh.start()
        try:
            await asyncio.wait_for(fresh.ready.wait(), WAIT_S)
            now = ctx.clock()
            assert {s.id: s.active(now) for s in fresh.all()} == {api_id: False, cli_id: False}
        finally:
            await fresh.stop()
        sent = metrics.web_silences.labels(operation="create", outcome="sent")._value.get()
        expired = metrics.web_silences.labels(operation="expire", outcome="sent")._value.get()
        assert (sent, expired) == (1, 1)

    async def _ready(http: ClientSession) -> bool:
        async with http.get("/api/silences") as r:
            return bool((await r.json())["ready"])

    asyncio.run(main())
