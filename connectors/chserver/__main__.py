"""``python -m connectors.chserver``: serve a chDB data directory over ClickHouse HTTP."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from connectors.chserver.errors import ServerError
from connectors.chserver.server import serve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m connectors.chserver",
        description="Serve ClickHouse's HTTP interface from an embedded chDB engine that owns "
        "DATA_DIR (one process per directory). Stops gracefully on SIGTERM/SIGINT.",
    )
    parser.add_argument("--data-dir", type=Path, required=True, help="chDB data directory")
    parser.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8123, help="listen port (default 8123)")
    parser.add_argument("--user", default=None, help="require this user name on every query")
    parser.add_argument(
        "--password-env",
        default="IOC_CLICKHOUSE_PASSWORD",
        metavar="VAR",
        help="environment variable holding the password for --user "
        "(default IOC_CLICKHOUSE_PASSWORD; never passed on the command line)",
    )
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    password = None
    if args.user:
        password = os.environ.get(args.password_env)
        if password is None:
            parser.error(f"--user needs the password in ${args.password_env}")
    try:
        serve(args.data_dir, args.host, args.port, user=args.user, password=password)
    except OSError as exc:
        logging.getLogger("connectors.chserver").error(
            "cannot serve on %s:%d: %s", args.host, args.port, exc
        )
        return 1
    except ServerError as exc:
        logging.getLogger("connectors.chserver").error(
            "cannot open %s: %s", args.data_dir, exc.first_line()
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
