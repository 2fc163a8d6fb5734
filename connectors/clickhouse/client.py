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


def wire_type(type_name: str) -> str:
    """The type a column is encoded as in an insert: ``LowCardinality(String)`` and enums are
    sent as ``String``.

    clickhouse-connect builds a LowCardinality dictionary and maps enum names value by value
    in Python (the dominant cost of a large insert), while a plain ``String`` column is
    encoded in C. The server converts each column to the table's type when it reads the Native
    block, so the stored data is the same; an enum name the type does not know fails the
    insert as it would have failed the encoding (the row builders validate enum values).
    """
    if type_name.startswith(("Enum8(", "Enum16(")):
        return "String"
    if type_name.startswith("LowCardinality(") and type_name.endswith(")"):
        inner = type_name[len("LowCardinality(") : -1]
        if inner in ("String", "Nullable(String)"):
            return inner
    return type_name


class InsertTypes:
    """Column types of the tables a client inserts into, read once (``DESCRIBE``) and cached.

    Passing the types to ``Client.insert`` saves the ``DESCRIBE`` round trip that
    clickhouse-connect otherwise makes before every insert. Call :meth:`forget` after a failed
    insert, so a table changed meanwhile is described again before the retry.
    """

    def __init__(self, client: Client) -> None:
        self.client = client
        self._tables: dict[str, dict[str, str]] = {}

    def type_names(self, table: str, columns: list[str]) -> list[str]:
        """The type of each of ``columns`` of ``table``, as the table declares it; KeyError if
        one is missing. (The sink sends these: a LowCardinality column goes as dictionary and
        indexes, far fewer bytes to compress, send and parse than every string in full.)"""
        types = self._tables.get(table)
        if types is None:
            rows = self.client.query(
                "DESCRIBE TABLE {t:Identifier}", parameters={"t": table}
            ).result_rows
            types = {
                str(r[0]): str(r[1]) for r in rows if str(r[2]) not in ("ALIAS", "MATERIALIZED")
            }
            self._tables[table] = types
        return [types[c] for c in columns]

    def wire_names(self, table: str, columns: list[str]) -> list[str]:
        """The :func:`wire_type` of each of ``columns`` of ``table``; KeyError if one is missing."""
        return [wire_type(t) for t in self.type_names(table, columns)]

    def forget(self, table: str) -> None:
        self._tables.pop(table, None)
