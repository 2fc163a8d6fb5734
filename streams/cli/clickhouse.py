"""``iocstream clickhouse serve``: the embedded ClickHouse engine behind its HTTP interface."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from streams.stack.settings import StackSettings


def run(argv: list[str]) -> int:
    stack = StackSettings()
    parser = argparse.ArgumentParser(
        prog="iocstream clickhouse",
        description="Serve ClickHouse's HTTP interface from an embedded chDB engine that owns "
        "the data directory (one process per directory). Normally started by `stack up`.",
    )
    sub = parser.add_subparsers(dest="action", required=True)
    serve = sub.add_parser("serve", help="serve until SIGTERM/Ctrl-C")
    serve.add_argument("--data-dir", type=Path, default=stack.data_dir / "clickhouse")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8123)
    serve.add_argument("--user", default=None, help="require this user (password from env)")
    serve.add_argument("--password-env", default="IOC_CLICKHOUSE_PASSWORD")
    args = parser.parse_args(argv)
    from connectors.chserver import serve as serve_http

    password = os.environ.get(args.password_env) if args.user else None
    serve_http(args.data_dir, args.host, args.port, user=args.user, password=password)
    return 0
