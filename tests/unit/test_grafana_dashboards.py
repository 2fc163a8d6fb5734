"""Grafana provisioning and dashboards: structure, generator in sync, and macro expansion.

:func:`expand` turns a panel's SQL into what ClickHouse receives, the way Grafana and the
official grafana-clickhouse-datasource plugin do it: Grafana first interpolates template
variables (``${district:singlequote}``), then the plugin expands its macros:

=======================  ==========================================================
``$__timeFilter(c)``     ``c >= toDateTime(<from s>) AND c <= toDateTime(<to s>)``
``$__timeFilter_ms(c)``  same with ``fromUnixTimestamp64Milli(<ms>)``
``$__fromTime``          ``toDateTime(<from s>)`` (``_ms``: ``fromUnixTimestamp64Milli``)
``$__toTime``            ``toDateTime(<to s>)``
``$__dateFilter(c)``     ``c >= toDate('<from date>') AND c <= toDate('<to date>')``
``$__timeInterval(c)``   ``toStartOfInterval(toDateTime(c), INTERVAL <n> second)``
``$__interval_s``        ``<n>`` (the panel interval in whole seconds, at least 1)
=======================  ==========================================================

The integration test (tests/integration/test_grafana_queries.py) runs every expanded query.
"""

from __future__ import annotations

import json
import re
import runpy
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from connectors.metrics import Metrics

GRAFANA = Path(__file__).resolve().parents[2] / "deploy" / "grafana"
RULES = Path(__file__).resolve().parents[2] / "deploy" / "alerts" / "rules.yaml"
_MACRO = re.compile(r"\$__(\w+)(?:\(([^()]*)\))?")
_VAR = re.compile(r"\$\{(\w+)(?::(\w+))?\}|\$(\w+)")


def _dt(t: datetime) -> str:
    return f"toDateTime({int(t.timestamp())})"


def _dt64(t: datetime) -> str:
    return f"fromUnixTimestamp64Milli({int(t.timestamp() * 1000)})"


def interpolate(sql: str, variables: Mapping[str, Sequence[str]]) -> str:
    """Grafana's template variable interpolation (formats: none, singlequote, csv)."""

    def repl(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(3)
        if name.startswith("__") or name not in variables:
            return m.group(0)
        values = variables[name]
        fmt = m.group(2) or ""
        if fmt == "singlequote":
            return ",".join("'" + v.replace("'", "\\'") + "'" for v in values)
        if fmt in ("", "csv"):
            return ",".join(values)
        raise AssertionError(f"format {fmt} not handled by this test")

    return _VAR.sub(repl, sql)


def expand(
    sql: str,
    start: datetime,
    end: datetime,
    interval_s: float,
    variables: Mapping[str, Sequence[str]] | None = None,
) -> str:
    """The SQL ClickHouse receives for a panel query (module docstring)."""
    sql = interpolate(sql, variables or {})
    seconds = max(int(interval_s), 1)

    def repl(m: re.Match[str]) -> str:
        name, raw = m.group(1), m.group(2)
        args = [a.strip() for a in raw.split(",")] if raw else []
        simple = {
            "fromTime": _dt(start),
            "toTime": _dt(end),
            "fromTime_ms": _dt64(start),
            "toTime_ms": _dt64(end),
            "interval_s": str(seconds),
        }
        if name in simple:
            assert raw is None, f"$__{name} takes no arguments"
            return simple[name]
        assert len(args) == 1, f"$__{name} needs one argument, got {args}"
        col = args[0]
        if name == "timeFilter":
            return f"{col} >= {_dt(start)} AND {col} <= {_dt(end)}"
        if name == "timeFilter_ms":
            return f"{col} >= {_dt64(start)} AND {col} <= {_dt64(end)}"
        if name == "dateFilter":
            return f"{col} >= toDate('{start:%Y-%m-%d}') AND {col} <= toDate('{end:%Y-%m-%d}')"
        if name == "timeInterval":
            return f"toStartOfInterval(toDateTime({col}), INTERVAL {seconds} second)"
        raise AssertionError(f"macro $__{name} is not one of the plugin's")

    out = _MACRO.sub(repl, sql)
    assert "$" not in out, f"unexpanded variable or macro left in: {out}"
    return out


def dashboards() -> dict[str, dict[str, Any]]:
    return {
        p.name: json.loads(p.read_text(encoding="utf-8"))
        for p in sorted((GRAFANA / "dashboards").glob("*.json"))
    }


def panels(board: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in board["panels"]:
        yield panel
        yield from panel.get("panels", [])


# --- macro expansion (vectors follow the plugin's documented output) --------------------------

START = datetime(2026, 11, 28, 3, 0, tzinfo=UTC)
END = datetime(2026, 11, 28, 9, 0, 0, 500_000, tzinfo=UTC)


def test_macros_expand_like_the_plugin() -> None:
    s, e = int(START.timestamp()), int(END.timestamp())
    assert expand("WHERE $__timeFilter(t)", START, END, 30) == (
        f"WHERE t >= toDateTime({s}) AND t <= toDateTime({e})"
    )
    assert expand("$__fromTime $__toTime", START, END, 30) == (f"toDateTime({s}) toDateTime({e})")
    assert expand("$__toTime_ms", START, END, 1) == "fromUnixTimestamp64Milli(1795856400500)"
    assert expand("$__timeInterval(ts)", START, END, 0.2) == (
        "toStartOfInterval(toDateTime(ts), INTERVAL 1 second)"
    )
    assert expand("x / $__interval_s", START, END, 60.9) == "x / 60"
    assert expand("$__dateFilter(d)", START, END, 1) == (
        "d >= toDate('2026-11-28') AND d <= toDate('2026-11-28')"
    )
    assert expand("d IN (${district:singlequote})", START, END, 1, {"district": ["a", "b"]}) == (
        "d IN ('a','b')"
    )
    with pytest.raises(AssertionError, match="not one of the plugin's"):
        expand("$__timeGroup(t)", START, END, 1)
    with pytest.raises(AssertionError, match="unexpanded"):
        expand("$unknown", START, END, 1)


# --- provisioning and dashboards --------------------------------------------------------------


def test_generated_files_are_in_sync() -> None:
    rendered = runpy.run_path(str(GRAFANA / "generate.py"))["render"]()
    on_disk = {p.name: p.read_text(encoding="utf-8") for p in (GRAFANA / "dashboards").glob("*")}
    assert rendered == on_disk, "run: python deploy/grafana/generate.py"


def test_provisioning_names_the_plugin_and_the_dashboard_folder() -> None:
    ds = yaml.safe_load((GRAFANA / "provisioning/datasources/iocstream.yaml").read_text())
    by_uid = {d["uid"]: d for d in ds["datasources"]}
    ch = by_uid["iocstream-clickhouse"]
    assert ch["type"] == "grafana-clickhouse-datasource"
    assert ch["jsonData"]["protocol"] == "http"
    assert "password" in ch["secureJsonData"]
    assert "password" not in ch["jsonData"]
    assert by_uid["iocstream-prometheus"]["type"] == "prometheus"
    prov = yaml.safe_load((GRAFANA / "provisioning/dashboards/iocstream.yaml").read_text())
    assert prov["providers"][0]["type"] == "file"


def test_dashboards_are_complete_and_linked_from_alert_rules() -> None:
    boards = dashboards()
    uids = {b["uid"] for b in boards.values()}
    assert {
        "ioc-overview",
        "ioc-air-quality",
        "ioc-river",
        "ioc-traffic",
        "ioc-devices",
        "ioc-platform",
        "ioc-alerts",
        "ioc-services",
    } <= uids
    linked = set(re.findall(r"\{grafana_url\}/d/([a-z0-9-]+)", RULES.read_text()))
    assert linked <= uids, f"alert rules link to unknown dashboards: {linked - uids}"
    variables = {b["uid"]: {v["name"] for v in b["templating"]["list"]} for b in boards.values()}
    links = re.findall(r"\{grafana_url\}/d/([a-z0-9-]+)\?([^\"]*)", RULES.read_text())
    assert links
    for uid, query in links:
        for name in re.findall(r"var-([a-z_]+)=", query):
            assert name in variables[uid], f"{uid} has no variable {name!r} (linked from rules)"
    for name, board in boards.items():
        assert name == f"{board['uid']}.json"
        ids = [p["id"] for p in panels(board)]
        assert len(ids) == len(set(ids)), name
        for panel in panels(board):
            for target in panel.get("targets", []):
                uid = target["datasource"]["uid"]
                assert uid in ("iocstream-clickhouse", "iocstream-prometheus"), panel["title"]
                assert ("rawSql" in target) == (uid == "iocstream-clickhouse"), panel["title"]


def test_prometheus_panels_use_defined_metrics() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    defined = set()
    for collector in vars(metrics).values():
        suffix = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}
        for s in suffix.get(collector._type, [""]):
            defined.add(collector._name + s)
    used = [
        name
        for board in dashboards().values()
        for panel in panels(board)
        for target in panel.get("targets", [])
        for name in re.findall(r"\biocstream_[a-z0-9_]+", target.get("expr", ""))
    ]
    assert used
    assert set(used) <= defined, set(used) - defined
