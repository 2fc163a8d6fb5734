"""Keeps the indicator tiles fresh: queries ClickHouse in a worker thread every few seconds.

The page polls ``/api/tiles``; every poll is answered from this cache, so a room full of
screens costs ClickHouse one set of queries per refresh period, not one per screen. The
clickhouse-connect client is created lazily (and again after a failure), so the web page
starts and shows alerts even while ClickHouse is down; tiles are then empty and the failure
is logged once per refresh.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from clickhouse_connect.driver.client import Client

from connectors.clickhouse.client import connect
from connectors.metrics import Metrics
from connectors.registry import Registry
from connectors.settings import ClickHouseSettings
from streams.flood import GaugeThresholds
from streams.web.tiles import TileSource

log = logging.getLogger(__name__)


class TileCache:
    """Latest tiles, refreshed in the background every ``refresh_s`` seconds."""

    def __init__(
        self,
        settings: ClickHouseSettings,
        registry: Registry,
        flood: Mapping[str, GaugeThresholds],
        metrics: Metrics,
        *,
        refresh_s: float = 15.0,
    ) -> None:
        self._settings = settings
        self._refresh_s = refresh_s
        self._client: Client | None = None
        self._lock = threading.Lock()
        self._source = TileSource(
            self._query,
            registry,
            flood,
            on_error=lambda tile: metrics.web_tile_errors.labels(tile=tile).inc(),
        )
        self._tiles: list[dict[str, Any]] | None = None
        self._task: asyncio.Task[None] | None = None

    def _query(self, sql: str, params: Mapping[str, Any]) -> Sequence[Sequence[Any]]:
        with self._lock:
            if self._client is None:
                self._client = connect(self._settings)
            rows: Sequence[Sequence[Any]] = self._client.query(
                sql, parameters=dict(params)
            ).result_rows
            return rows

    def _compute(self) -> list[dict[str, Any]]:
        try:
            return self._source.tiles()
        except Exception as exc:  # noqa: BLE001  # ClickHouse unreachable: empty tiles, retry
            log.warning(
                "tiles unavailable: %s", str(exc).splitlines()[0][:300] if str(exc) else exc
            )
            with self._lock:
                if self._client is not None:
                    self._client.close()
                self._client = None
            return []

    async def refresh(self) -> list[dict[str, Any]]:
        """Query now and keep the result."""
        self._tiles = await asyncio.to_thread(self._compute)
        return self._tiles

    async def get(self) -> list[dict[str, Any]]:
        """The cached tiles (queried now if there are none yet)."""
        return self._tiles if self._tiles is not None else await self.refresh()

    async def _loop(self) -> None:
        while True:
            await self.refresh()
            await asyncio.sleep(self._refresh_s)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="tile-refresh")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None
