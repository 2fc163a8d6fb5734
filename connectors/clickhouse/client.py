"""One way to get a clickhouse-connect client, for the embedded engine and a server alike."""

from __future__ import annotations

from typing import Any

import clickhouse_connect
from clickhouse_connect.driver.client import Client

from connectors.settings import ClickHouseSettings


def connect(
    settings: ClickHouseSettings | None = None, *, database: str | None = "", **kwargs: Any
) -> Client:
    """A client for ``settings`` (default: from the environment).

    ``database=""`` (the default) selects the configured database; ``None`` selects none,
    for statements that create the database itself.
    """
    settings = settings or ClickHouseSettings()
    options = settings.client_options()
    if database == "":
        options["database"] = settings.database
    elif database is not None:
        options["database"] = database
    options.update(kwargs)
    client: Client = clickhouse_connect.get_client(**options)
    return client
