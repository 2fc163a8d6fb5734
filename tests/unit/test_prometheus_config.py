"""deploy/prometheus: the scrape config and alert rules parse, and name only real metrics.

Every ``iocstream_*`` series an expression uses must be produced by a metric defined in
connectors/metrics.py (counters as ``<name>_total``, histograms as ``_bucket``/``_sum``/
``_count``), every label an expression groups by must exist on those metrics (or be a target
label), and every scrape job must point at a distinct port.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from connectors.metrics import Metrics

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
TARGET_LABELS = {"job", "instance", "component"}  # set by the scrape config
BUILTIN = {"up"}
SEVERITIES = {"critical", "major", "minor", "warning", "info"}
SERIES = re.compile(r"\b(iocstream_[a-z0-9_]+)\b")
BY = re.compile(r"\bby\s*\(([^)]*)\)")
DURATION = re.compile(r"^\d+[smhdw]$")


def _defined() -> dict[str, set[str]]:
    """Series name -> label names, for every metric of connectors/metrics.py."""
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    out: dict[str, set[str]] = {}
    for collector in vars(metrics).values():
        name = collector._name
        labels = set(collector._labelnames)
        kind = collector._type
        if kind == "counter":
            names = [f"{name}_total"]
        elif kind == "histogram":
            names = [f"{name}_bucket", f"{name}_sum", f"{name}_count"]
        else:
            names = [name]
        for n in names:
            out[n] = labels | ({"le"} if n.endswith("_bucket") else set())
    return out


def _load(name: str) -> Any:
    return yaml.safe_load((DEPLOY / name).read_text(encoding="utf-8"))


def _rules() -> list[dict[str, Any]]:
    return [rule for group in _load("rules.yml")["groups"] for rule in group["rules"]]


def test_scrape_config_covers_every_process_on_distinct_ports() -> None:
    config = _load("prometheus.yml")
    assert config["rule_files"] == ["rules.yml"]
    ports: dict[int, str] = {}
    for job in config["scrape_configs"]:
        assert job["job_name"].startswith("iocstream-")
        for static in job["static_configs"]:
            for target in static["targets"]:
                port = int(target.rsplit(":", 1)[1])
                assert port not in ports, f"{job['job_name']} and {ports[port]} share {port}"
                ports[port] = job["job_name"]
    assert ports[9401] == "iocstream-bridge"
    assert ports[9402] == "iocstream-sink"
    assert {"iocstream-web", "iocstream-alerter", "iocstream-notifier"} <= set(ports.values())


def test_rules_are_complete() -> None:
    rules = _rules()
    names = [r["alert"] for r in rules]
    assert len(names) == len(set(names)), "duplicate alert names"
    for rule in rules:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule["alert"]
        assert rule["labels"]["severity"] in SEVERITIES, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        assert rule["annotations"]["description"], rule["alert"]
        if "for" in rule:
            assert DURATION.match(rule["for"]), rule["alert"]
        assert rule["expr"].count("(") == rule["expr"].count(")"), rule["alert"]
    text = " ".join(r["expr"] for r in rules)
    for topic in ("consumer_lag", "dead_letters", "sink_insert_retries", "bridge_mqtt_connected"):
        assert f"iocstream_{topic}" in text, f"no rule on {topic}"
    assert "iocstream_district_readings_total" in text


@pytest.mark.parametrize("rule", _rules(), ids=lambda r: r["alert"])
def test_every_metric_and_label_in_a_rule_exists(rule: dict[str, Any]) -> None:
    defined = _defined()
    expr = rule["expr"]
    used = SERIES.findall(expr)
    unknown = [name for name in used if name not in defined]
    assert not unknown, f"{rule['alert']}: not in connectors/metrics.py: {unknown}"
    others = set(re.findall(r"\b([a-z_][a-z0-9_]*)\s*\{", expr)) - set(used)
    assert others <= BUILTIN, f"{rule['alert']}: unknown series {others - BUILTIN}"
    labels = set().union(*(defined[name] for name in used)) | TARGET_LABELS
    for group in BY.findall(expr):
        for label in (x.strip() for x in group.split(",") if x.strip()):
            assert label in labels, f"{rule['alert']}: no metric here has label {label!r}"
    for label in re.findall(r"\$labels\.([a-z_]+)", str(rule["annotations"])):
        assert label in labels, f"{rule['alert']}: annotation uses unknown label {label!r}"


def test_the_checker_catches_a_typo() -> None:
    assert "iocstream_sink_rows_total" in _defined()
    assert "iocstream_sink_row_total" not in _defined()
    assert "iocstream_sink_insert_seconds_bucket" in _defined()
