"""Ordered, recorded, idempotent ClickHouse schema migrations.

Migrations are the files ``schemas/clickhouse/NNNN_name.sql``, applied in numeric order.
Each file holds one or more statements separated by ``;`` at the end of a line, written
with unqualified table names (they run with the target database selected) and with
``IF NOT EXISTS`` so a half-applied file can be re-run.

Guarantees:

* A migration is recorded in ``schema_migrations`` (version, name, checksum, time) only
  after all its statements succeeded; running ``migrate`` again applies nothing.
* A recorded migration whose file changed since is reported as an error (checksum
  mismatch), never silently re-applied.
* ``{{name}}`` placeholders (retention days, see :mod:`connectors.clickhouse.retention`) are
  filled in when a statement runs; the checksum is of the file as written, so another
  retention setting is not a changed migration. An unknown placeholder is an error.
* Statements use only syntax that both chDB (embedded engine) and ClickHouse server 24.8+
  accept; they run with the target database selected, so table names are unqualified.
* With a cluster name (``IOC_CLICKHOUSE_CLUSTER``), every statement, the database and the
  ``schema_migrations`` ledger are rendered by :mod:`connectors.clickhouse.cluster`
  (``ON CLUSTER``, replicated local tables behind Distributed tables). All statements of all
  migrations are rendered before the first one runs, so a statement without a cluster form
  stops the run before anything changed. Without a cluster name nothing changes.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

from clickhouse_connect.driver.client import Client

from connectors.clickhouse.cluster import ClusterRenderer, ClusterSQLError, ClusterTarget
from connectors.clickhouse.retention import RetentionSettings

log = logging.getLogger(__name__)

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_PLACEHOLDER = re.compile(r"\{\{([a-z0-9_]+)\}\}")

LEDGER = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version UInt32,
    name String,
    checksum String,
    applied_at DateTime64(3, 'UTC')
) ENGINE = MergeTree ORDER BY version
"""


class MigrationError(RuntimeError):
    """A migration file is malformed, changed after being applied, or failed."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    def statements(self, values: dict[str, int] | None = None) -> list[str]:
        """The file's statements (split on ``;`` at end of line, comments kept), with
        ``{{name}}`` placeholders replaced by ``values`` (default: retention settings)."""
        values = RetentionSettings().placeholders() if values is None else values
        parts = re.split(r";\s*$", self.sql, flags=re.MULTILINE)
        where = f"{self.version:04d}_{self.name}"
        return [render(p.strip(), values, where) for p in parts if _has_code(p)]


def render(sql: str, values: dict[str, int], where: object = "") -> str:
    """``sql`` with every ``{{name}}`` replaced by ``values[name]`` (an int)."""

    def sub(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise MigrationError(f"{where}: unknown placeholder {{{{{name}}}}}")
        return str(int(values[name]))

    return _PLACEHOLDER.sub(sub, sql)


def _has_code(text: str) -> bool:
    return any(line.strip() and not line.strip().startswith("--") for line in text.splitlines())


def default_dir() -> Path:
    return Path(str(resources.files("schemas") / "clickhouse"))


def load_migrations(directory: Path | None = None) -> list[Migration]:
    """All migrations in ``directory`` in order; raises ``MigrationError`` on bad names."""
    directory = directory or default_dir()
    found: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _NAME.match(path.name)
        if not match:
            raise MigrationError(f"{path}: name must look like 0001_create_readings.sql")
        version = int(match.group(1))
        if version in found:
            raise MigrationError(f"{path}: version {version} is used twice")
        found[version] = Migration(version, match.group(2), path.read_text(encoding="utf-8"))
    return [found[v] for v in sorted(found)]


def applied(client: Client) -> dict[int, str]:
    """Version -> checksum of every recorded migration."""
    rows = client.query("SELECT version, checksum FROM schema_migrations").result_rows
    return {int(v): str(c) for v, c in rows}


@dataclass(frozen=True)
class Plan:
    """Every statement ``migrate`` may run: ``setup`` (database and ledger), then each
    migration's statements, rendered for ``cluster`` if one is given."""

    setup: list[str]
    migrations: list[tuple[Migration, list[str]]]
    renderer: ClusterRenderer | None


def plan(
    database: str,
    directory: Path | None = None,
    retention: RetentionSettings | None = None,
    cluster: str | None = None,
) -> Plan:
    """Render every statement for ``database`` (and ``cluster``) without a server.

    Raises ``MigrationError`` for an invalid name, a bad migration file, or a statement that
    has no cluster form.
    """
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", database):
        raise MigrationError(f"invalid database name {database!r}")
    values = (retention or RetentionSettings()).placeholders()
    migrations = load_migrations(directory)
    setup = [f"CREATE DATABASE IF NOT EXISTS {database}", LEDGER.strip()]
    if not cluster:
        return Plan(setup, [(m, m.statements(values)) for m in migrations], None)
    try:
        renderer = ClusterRenderer(ClusterTarget(cluster, database))
        setup = [s for statement in setup for s in renderer.render(statement)]
        rendered = []
        for m in migrations:
            where = f"{m.version:04d}_{m.name}"
            try:
                rendered.append(
                    (m, [s for st in m.statements(values) for s in renderer.render(st)])
                )
            except ClusterSQLError as exc:
                raise MigrationError(f"migration {where}: {exc}") from exc
    except ClusterSQLError as exc:
        raise MigrationError(str(exc)) from exc
    return Plan(setup, rendered, renderer)


def migrate(
    client: Client,
    database: str,
    directory: Path | None = None,
    retention: RetentionSettings | None = None,
    cluster: str | None = None,
) -> list[Migration]:
    """Create ``database`` if needed and apply pending migrations; return those applied.

    ``client`` must not have a database selected that may not exist yet; statements run
    with ``database`` selected through the ``database`` setting of each call. With
    ``cluster``, every statement runs ``ON CLUSTER`` in its cluster form (see :func:`plan`).
    """
    steps = plan(database, directory, retention, cluster)
    create_database, *ledger = steps.setup
    client.command(create_database)
    client.database = database
    for statement in ledger:
        client.command(statement)
    done = applied(client)
    newly: list[Migration] = []
    for migration, statements in steps.migrations:
        if migration.version in done:
            if done[migration.version] != migration.checksum:
                raise MigrationError(
                    f"migration {migration.version:04d}_{migration.name} changed after it was "
                    "applied; add a new migration instead of editing an applied one"
                )
            continue
        log.info(
            "applying migration %04d_%s%s",
            migration.version,
            migration.name,
            f" on cluster {cluster}" if cluster else "",
        )
        for statement in statements:
            try:
                client.command(statement)
            except Exception as exc:
                raise MigrationError(
                    f"migration {migration.version:04d}_{migration.name} failed: {exc}"
                ) from exc
        client.insert(
            "schema_migrations",
            [[migration.version, migration.name, migration.checksum, datetime.now(UTC)]],
            column_names=["version", "name", "checksum", "applied_at"],
        )
        newly.append(migration)
    return newly
