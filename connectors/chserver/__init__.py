"""The embedded ClickHouse server: chDB behind ClickHouse's HTTP interface.

One process owns a chDB data directory and serves ClickHouse's HTTP protocol on loopback,
so every other component (and Grafana) talks to it with an ordinary ClickHouse client
(clickhouse-connect) exactly as to a production server. Start it with
``python -m connectors.chserver --data-dir DIR`` or call :func:`serve`.
"""

from connectors.chserver.server import run_server, serve

__all__ = ["run_server", "serve"]
