"""The cluster form of the ClickHouse migrations: replicated shards behind Distributed tables.

The migrations in ``schemas/clickhouse/`` are written for one node. With a cluster name
(``IOC_CLICKHOUSE_CLUSTER``), :class:`ClusterRenderer` turns each of their statements into the
statements that build the same schema on every node of that cluster (``remote_servers`` in the
servers' configuration, ClickHouse Keeper for replication, macros ``{shard}`` and ``{replica}``
on every node). It is pure: text in, text out, no server.

What each statement becomes:

* ``CREATE DATABASE`` / ``CREATE VIEW``: the same, ``ON CLUSTER '<cluster>'``. Views keep
  reading the plain table names, which are the Distributed tables below.
* ``CREATE TABLE t ... ENGINE = <X>MergeTree(args)`` of a sharded table (the default):
  ``t_local ON CLUSTER`` with ``Replicated<X>MergeTree(
  '/clickhouse/tables/{shard}/{database}/t_local', '{replica}', args)``
  (``non_replicated_deduplication_window`` becomes ``replicated_deduplication_window``, the
  same window), plus ``t ON CLUSTER AS t_local
  ENGINE = Distributed('<cluster>', '<database>', 't_local', <sharding key>)``. Readers and the
  sink keep using ``t``.
* A table of :data:`EVERYWHERE` (small bookkeeping and dimension tables) is not sharded: it
  keeps its name and every node of the cluster holds a full replica
  (path ``/clickhouse/tables/all/{database}/t``, replica ``'{shard}-{replica}'``), so joins with
  it stay local and every node agrees on which migrations were applied.
* ``CREATE MATERIALIZED VIEW v TO t AS SELECT ... FROM s``: on the local tables
  (``TO t_local ... FROM s_local AS s``), next to their source on each shard. Source and target
  must be sharded with the same key, so everything the view writes for a key stays on the
  shard that holds the key.
* ``ALTER TABLE t ...``: ``ON CLUSTER`` on ``t_local``; column changes (ADD/DROP/MODIFY/RENAME/
  COMMENT COLUMN) also on the Distributed ``t``.

Sharding keys (:data:`SHARDING_KEYS`) are deterministic functions of each row, so a replayed
insert sends every row to the shard it went to before (where the replicated table's
deduplication drops it), and for the Replacing/Aggregating engines they use only sorting-key
columns, so all versions of one key meet on one shard and ``FINAL``/``argMax`` stay correct
per shard. A table without an entry is sharded by ``cityHash64(device_id)`` if it has that
column in its sorting key.

Guarantees: every statement either renders completely or raises :class:`ClusterSQLError`
naming it; what the renderer does not understand (other engines, ``ON CLUSTER`` already
present, qualified or quoted names, materialized views with joins, ``INSERT``, ``DROP``, ...)
is refused, never passed through unchanged. The output was checked by ClickHouse's own parser
(``formatQuery``, tests/integration/test_clickhouse_cluster_sql.py), not run on a cluster here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

SHARDING_KEYS: dict[str, str] = {
    # Per device: a device's readings, windows, roll-ups and latest values on one shard.
    "readings": "cityHash64(device_id)",
    "indicator_windows": "cityHash64(device_id)",
    "indicator_windows_1h": "cityHash64(device_id)",
    "indicator_windows_1d": "cityHash64(device_id)",
    "latest_readings": "cityHash64(device_id)",
    # Per subject (device, ward, district, agency): every revision of a window together.
    "indicator_values": "cityHash64(subject_id)",
    # Per alert fingerprint: its history and its latest state together.
    "alert_events": "cityHash64(fingerprint)",
    "alerts_latest": "cityHash64(fingerprint)",
    # Per event identity (source, id): a redelivered event meets its first copy.
    "events": "cityHash64(source, id)",
    # Append-only logs with no natural key: the row's Kafka position (deterministic, even).
    "dead_letters": "cityHash64(kafka_topic, kafka_partition, kafka_offset)",
    "notification_attempts": "cityHash64(kafka_topic, kafka_partition, kafka_offset)",
}
"""Sharding key of each sharded table of the repository's migrations."""

EVERYWHERE: frozenset[str] = frozenset(
    {"schema_migrations", "devices", "flood_levels", "sink_ledger"}
)
"""Tables replicated in full to every node instead of sharded: migration bookkeeping, the
dimension tables that views join with, and the sink's ledger (one row per topic-partition)."""

_DEDUPLICATING = re.compile(
    r"^(Replacing|Aggregating|Summing|Collapsing|VersionedCollapsing|Graphite|Coalescing)"
)
_MERGE_TREE = re.compile(
    r"^(|Replacing|Aggregating|Summing|Collapsing|VersionedCollapsing|Graphite|Coalescing)MergeTree$"
)
_CLUSTER_NAME = re.compile(r"[A-Za-z0-9_.\-]+|\{[A-Za-z0-9_]+\}")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_TOKEN = re.compile(
    r"""(?P<ws>\s+)
    |(?P<comment>--[^\n]*|\#[ !][^\n]*|/\*.*?\*/)
    |(?P<string>'(?:[^'\\]|\\.|'')*')
    |(?P<qident>`(?:[^`\\]|\\.|``)*`|"(?:[^"\\]|\\.|"")*")
    |(?P<word>[A-Za-z_][A-Za-z0-9_]*)
    |(?P<number>[0-9][A-Za-z0-9_.]*)
    |(?P<punct>.)""",
    re.VERBOSE | re.DOTALL,
)
# Words that end a FROM item: after one of them a table has no alias.
_CLAUSES = frozenset(
    {
        "WHERE", "PREWHERE", "GROUP", "ORDER", "LIMIT", "OFFSET", "HAVING", "FINAL", "SAMPLE",
        "ARRAY", "LEFT", "RIGHT", "INNER", "FULL", "CROSS", "JOIN", "GLOBAL", "ANY", "ALL",
        "ASOF", "SEMI", "ANTI", "PASTE", "UNION", "EXCEPT", "INTERSECT", "SETTINGS", "WINDOW",
        "QUALIFY", "FORMAT", "INTO", "WITH", "USING", "ON",
    }
)  # fmt: skip
_COLUMN_OPS = frozenset({"ADD", "DROP", "MODIFY", "RENAME", "COMMENT"})


class ClusterSQLError(ValueError):
    """A statement has no cluster form that this renderer can produce safely."""


@dataclass(frozen=True)
class ClusterTarget:
    """Where the rendered statements run: a cluster of ``remote_servers`` and a database."""

    cluster: str
    database: str

    def __post_init__(self) -> None:
        if not _CLUSTER_NAME.fullmatch(self.cluster):
            raise ClusterSQLError(f"invalid cluster name {self.cluster!r}")
        if not _IDENTIFIER.fullmatch(self.database):
            raise ClusterSQLError(f"invalid database name {self.database!r}")

    @property
    def on_cluster(self) -> str:
        return f" ON CLUSTER '{self.cluster}'"


@dataclass(frozen=True)
class Placement:
    """How a table created by the migrations lives on the cluster."""

    kind: Literal["sharded", "everywhere", "view"]
    key: str = ""  # sharding key of a sharded table


@dataclass
class _Token:
    kind: str
    text: str


class _Statement:
    """One statement as tokens, with navigation over its significant ones."""

    def __init__(self, sql: str) -> None:
        self.sql = sql
        self.tokens = [_Token(m.lastgroup or "punct", m.group()) for m in _TOKEN.finditer(sql)]
        for t in self.tokens:
            if t.kind == "punct" and t.text in "'`\"":
                raise ClusterSQLError(f"unterminated quote in: {_head(sql)}")
        self.sig = [i for i, t in enumerate(self.tokens) if t.kind not in ("ws", "comment")]
        depth = 0
        for p in range(len(self.sig)):
            depth += {"(": 1, ")": -1}.get(self.up(p), 0)
            if depth < 0:
                break
        if depth != 0:
            raise self.error("unbalanced parentheses")

    def up(self, p: int) -> str:
        """Significant token ``p`` (upper-cased if a word; "" past the end)."""
        if p >= len(self.sig):
            return ""
        t = self.tokens[self.sig[p]]
        return t.text.upper() if t.kind == "word" else t.text

    def word(self, p: int) -> _Token:
        """Significant token ``p``, which must be a plain (unquoted, unqualified) name."""
        tok = self.tokens[self.sig[p]] if p < len(self.sig) else _Token("end", "")
        if tok.kind != "word" or self.up(p + 1) == ".":
            raise self.error("expected a plain unqualified name")
        return tok

    def close(self, p: int) -> int:
        """Position of the ``)`` matching the ``(`` at significant position ``p``."""
        depth = 0
        for q in range(p, len(self.sig)):
            depth += {"(": 1, ")": -1}.get(self.up(q), 0)
            if depth == 0:
                return q
        raise self.error("unbalanced parentheses")

    def text(self, start: int, stop: int) -> str:
        """Source text of significant positions ``start`` .. ``stop`` - 1."""
        return "".join(t.text for t in self.tokens[self.sig[start] : self.sig[stop - 1] + 1])

    def after(self, p: int, extra: str) -> None:
        """Append ``extra`` to significant token ``p``."""
        self.tokens[self.sig[p]].text += extra

    def render(self) -> str:
        return "".join(t.text for t in self.tokens).strip()

    def error(self, why: str) -> ClusterSQLError:
        return ClusterSQLError(f"cannot render for a cluster ({why}): {_head(self.sql)}")


def _head(sql: str) -> str:
    code = [ln for ln in sql.splitlines() if ln.strip() and not ln.strip().startswith("--")]
    return (code[0] if code else sql).strip()[:100]


class ClusterRenderer:
    """Renders migration statements in order; remembers the tables they created.

    Feed it every statement from the first migration on (including ones already applied), so
    that later ``ALTER``s and materialized views know how their tables were placed.
    """

    def __init__(self, target: ClusterTarget) -> None:
        self.target = target
        self.tables: dict[str, Placement] = {}

    def render(self, sql: str) -> list[str]:
        """The cluster form of one statement: one or more statements, in execution order."""
        st = _Statement(sql)
        if st.up(0) == "ALTER":
            return self._alter(st)
        if st.up(0) != "CREATE":
            raise st.error("only CREATE and ALTER TABLE statements are supported")
        p = 1
        if st.up(p) == "MATERIALIZED" and st.up(p + 1) == "VIEW":
            kind, p = "MV", p + 2
        elif st.up(p) in ("TABLE", "VIEW", "DATABASE"):
            kind, p = st.up(p), p + 1
        else:
            raise st.error(f"CREATE {st.up(p)} is not supported")
        if [st.up(p), st.up(p + 1), st.up(p + 2)] == ["IF", "NOT", "EXISTS"]:
            p += 3
        name = st.word(p).text
        if st.up(p + 1) == "ON":
            raise st.error("it already has ON CLUSTER; write migrations for one node")
        if kind == "DATABASE":
            st.after(p, self.target.on_cluster)
            return [st.render()]
        if kind == "VIEW":
            if st.up(p + 1) != "AS":
                raise st.error("expected AS after the view's name")
            st.after(p, self.target.on_cluster)
            self.tables[name] = Placement("view")
            return [st.render()]
        if kind == "MV":
            return [self._materialized_view(st, p, name)]
        return self._table(st, p, name)

    def _table(self, st: _Statement, p: int, name: str) -> list[str]:
        if st.up(p + 1) != "(":
            raise st.error("expected a column list after the table's name")
        end = st.close(p + 1)
        columns = _column_names(st, p + 2, end)
        q = end + 1
        while q < len(st.sig) and st.up(q) != "ENGINE":
            q += 1
        if q == len(st.sig):
            raise st.error("a table needs an explicit ENGINE")
        q += 2 if st.up(q + 1) == "=" else 1
        engine = st.word(q).text
        if not _MERGE_TREE.match(engine):
            raise st.error(f"engine {engine} is not a non-replicated *MergeTree")
        args_end = st.close(q + 1) if st.up(q + 1) == "(" else q
        args = st.text(q + 2, args_end) if args_end > q + 2 else ""
        order_by = _order_by(st, args_end + 1)
        _rename_setting(st, args_end + 1)
        everywhere = name in EVERYWHERE
        local = name if everywhere else f"{name}_local"
        if everywhere:
            path, replica = f"/clickhouse/tables/all/{{database}}/{name}", "{shard}-{replica}"
        else:
            path, replica = f"/clickhouse/tables/{{shard}}/{{database}}/{local}", "{replica}"
        replicated = f"Replicated{engine}('{path}', '{replica}'{', ' + args if args else ''})"
        for i in range(st.sig[q], st.sig[args_end] + 1):
            st.tokens[i].text = ""
        st.tokens[st.sig[q]].text = replicated
        st.tokens[st.sig[p]].text = local
        st.after(p, self.target.on_cluster)
        if everywhere:
            self.tables[name] = Placement("everywhere")
            return [st.render()]
        key = self._sharding_key(st, name, engine, columns, order_by)
        self.tables[name] = Placement("sharded", key)
        t = self.target
        distributed = (
            f"CREATE TABLE IF NOT EXISTS {name}{t.on_cluster} AS {local}\n"
            f"ENGINE = Distributed('{t.cluster}', '{t.database}', '{local}', {key})"
        )
        return [st.render(), distributed]

    def _sharding_key(
        self, st: _Statement, name: str, engine: str, columns: set[str], order_by: set[str]
    ) -> str:
        key = SHARDING_KEYS.get(name)
        if key is None:
            if "device_id" not in columns or "device_id" not in order_by:
                raise st.error(
                    f"no sharding key for table {name}: add one to SHARDING_KEYS in "
                    "connectors/clickhouse/cluster.py (or EVERYWHERE)"
                )
            key = "cityHash64(device_id)"
        used = set(re.findall(r"\b([A-Za-z_][A-Za-z0-9_]*)\b(?!\s*\()", key))
        if not used or not used <= columns:
            raise st.error(f"sharding key {key} of {name} names columns it does not have")
        if _DEDUPLICATING.match(engine) and not used <= order_by:
            raise st.error(
                f"sharding key {key} of {engine} table {name} must use only sorting-key "
                "columns, or rows of one key would land on different shards"
            )
        return key

    def _materialized_view(self, st: _Statement, p: int, name: str) -> str:
        if st.up(p + 1) != "TO":
            raise st.error("a materialized view needs TO <table> (no inner engine)")
        target = st.word(p + 2)
        if st.up(p + 3) != "AS":
            raise st.error("expected AS after TO <table>")
        sources: list[int] = []
        for q in range(p + 4, len(st.sig)):
            if st.up(q) == "JOIN" and st.up(q - 1) != "ARRAY":
                raise st.error("materialized views with JOIN are not supported")
            if st.up(q) == "FROM" and st.up(q + 1) != "(":
                st.word(q + 1)
                sources.append(q + 1)
        if len(sources) != 1:
            raise st.error("a materialized view must read exactly one table")
        src = sources[0]
        source_name = st.tokens[st.sig[src]].text
        into, source = self.tables.get(target.text), self.tables.get(source_name)
        if into is None or into.kind != "sharded" or source is None or source.kind != "sharded":
            raise st.error("a materialized view must read and write sharded tables")
        if into.key != source.key:
            raise st.error(f"{source_name} and {target.text} are sharded differently")
        alias = st.up(src + 1)
        has_alias = alias == "AS" or (alias not in _CLAUSES and alias not in ("", ";", ")", ","))
        if st.up(src + (3 if alias == "AS" else 2 if has_alias else 1)) == ",":
            raise st.error("materialized views reading several tables are not supported")
        st.tokens[st.sig[src]].text = f"{source_name}_local"
        if not has_alias:
            st.after(src, f" AS {source_name}")
        target.text = f"{target.text}_local"
        st.after(p, self.target.on_cluster)
        self.tables[name] = Placement("view")
        return st.render()

    def _alter(self, st: _Statement) -> list[str]:
        if st.up(1) != "TABLE":
            raise st.error("only ALTER TABLE is supported")
        name = st.word(2).text
        if st.up(3) == "ON":
            raise st.error("it already has ON CLUSTER; write migrations for one node")
        placement = self.tables.get(name)
        if placement is None or placement.kind == "view":
            raise st.error(f"{name} is not a table created by an earlier migration")
        st.after(2, self.target.on_cluster)
        if placement.kind == "everywhere":
            return [st.render()]
        ops = _top_level_split(st, 3)
        column = [st.up(o) in _COLUMN_OPS and st.up(o + 1) == "COLUMN" for o in ops]
        if any(column) and not all(column):
            raise st.error("mix of column and other changes; split it into two statements")
        st.tokens[st.sig[2]].text = f"{name}{self.target.on_cluster}"
        on_distributed = st.render()
        st.tokens[st.sig[2]].text = f"{name}_local{self.target.on_cluster}"
        on_local = st.render()
        if not all(column):
            return [on_local]
        if any(st.up(o) == "DROP" for o in ops):
            return [on_distributed, on_local]
        return [on_local, on_distributed]


def _column_names(st: _Statement, start: int, end: int) -> set[str]:
    names: set[str] = set()
    for item in _top_level_split(st, start, end):
        if st.up(item) in ("INDEX", "PROJECTION", "CONSTRAINT"):
            continue
        tok = st.tokens[st.sig[item]]
        names.add(tok.text.strip('`"') if tok.kind == "qident" else tok.text)
    return names


def _top_level_split(st: _Statement, start: int, end: int | None = None) -> list[int]:
    """Start positions of the comma-separated items between ``start`` and ``end``."""
    end = len(st.sig) if end is None else end
    items, depth = [start], 0
    for q in range(start, end):
        depth += {"(": 1, ")": -1}.get(st.up(q), 0)
        if depth == 0 and st.up(q) == ",":
            items.append(q + 1)
    return [i for i in items if i < end and st.up(i) != ";"]


def _order_by(st: _Statement, start: int) -> set[str]:
    """Names used in the table's ``ORDER BY`` clause (after ``start``)."""
    stops = {"PARTITION", "PRIMARY", "SAMPLE", "TTL", "SETTINGS", "COMMENT"}
    for q in range(start, len(st.sig)):
        if st.up(q) == "ORDER" and st.up(q + 1) == "BY":
            found: set[str] = set()
            for r in range(q + 2, len(st.sig)):
                if st.up(r) in stops:
                    break
                if st.tokens[st.sig[r]].kind == "word":
                    found.add(st.tokens[st.sig[r]].text)
            return found
    raise st.error("a MergeTree table needs ORDER BY")


def _rename_setting(st: _Statement, start: int) -> None:
    """``non_replicated_deduplication_window`` -> ``replicated_deduplication_window``."""
    for q in range(start, len(st.sig)):
        if st.up(q) == "SETTINGS":
            for r in range(q + 1, len(st.sig)):
                tok = st.tokens[st.sig[r]]
                if tok.text == "non_replicated_deduplication_window":
                    tok.text = "replicated_deduplication_window"
