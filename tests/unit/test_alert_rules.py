"""Alert rules: the shipped rule file, validation errors, durations, matchers, templates, ids."""

from __future__ import annotations

import copy
import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from streams.alerts import (
    Observation,
    RuleConfigError,
    fingerprint,
    load_rules,
    observe,
)
from streams.alerts.durations import format_duration, parse_duration
from streams.alerts.machine import render_annotations
from streams.alerts.matchers import Matcher, matches_all
from streams.alerts.rules import ThresholdSpec
from streams.alerts.templates import TemplateError, check_template, render
from streams.flood import load_flood_levels

T0 = datetime(2026, 11, 28, 2, 0, tzinfo=UTC)

# --- the shipped rule file ------------------------------------------------------------------------


def test_default_rule_file_loads_with_every_rule_type() -> None:
    rules = load_rules()
    kinds = {r.kind for r in rules.rules}
    assert kinds == {
        "threshold",
        "rate_of_change",
        "flatline",
        "out_of_range",
        "absence",
        "sla",
        "composite",
    }
    for name in (
        "vn_aqi_station",
        "vn_aqi_district",
        "pm25_mean_1m",
        "river_level_alarm",
        "river_rise_rate",
        "device_silent",
        "district_silent",
        "feedback_response_sla",
        "application_overdue",
    ):
        assert rules[name].name == name


def test_every_shipped_rule_speaks_vietnamese_and_english() -> None:
    for rule in load_rules().rules:
        for key in ("summary_vi", "summary_en"):
            assert rule.annotations[key], (rule.name, key)
        assert ("description_vi" in rule.annotations) == ("description_en" in rule.annotations)


def test_river_ladders_follow_the_flood_levels_file() -> None:
    spec = load_rules()["river_level_alarm"].spec
    assert isinstance(spec, ThresholdSpec)
    levels = load_flood_levels()
    assert set(spec.ladders) == set(levels)
    for station, gauge in levels.items():
        ladder = spec.ladders[station]
        assert [s.at for s in ladder.steps] == [m for _level, m in gauge.thresholds()]
        assert [s.label_vi for s in ladder.steps] == [lv.label_vi for lv, _m in gauge.thresholds()]
        assert all(s.clear == pytest.approx(s.at - 0.10) for s in ladder.steps)
    assert [s.severity for s in spec.ladders["long-xuyen"].steps] == ["minor", "major", "critical"]


def test_shipped_river_rule_renders_in_both_languages() -> None:
    rule = load_rules()["river_level_alarm"]
    labels = {
        "device_id": "rg-long-xuyen",
        "device_kind": "river_gauge",
        "district": "long-xuyen",
        "station": "long-xuyen",
        "river": "hau",
    }
    state, events = observe(None, rule, Observation(labels, "level", 2.27, T0), T0)
    assert [(e.kind, e.to_severity) for e in events] == [("firing", "major")]
    notes = state.annotations
    assert notes["summary_vi"] == "Mực nước tại trạm long-xuyen đạt BĐ II: 2.27 m"
    assert notes["summary_en"] == "River level at long-xuyen reached alarm level II: 2.27 m"
    assert "ngưỡng BĐ II là 2.20 m (mức Nghiêm trọng)" in notes["description_vi"]
    assert notes["dashboard_url"] == "http://127.0.0.1:3000/d/ioc-river?var-station=long-xuyen"
    assert "<missing" not in "".join(notes.values())


# --- validation ---------------------------------------------------------------------------------

BASE: dict[str, Any] = {
    "name": "pm25_1m",
    "type": "threshold",
    "metric": "pm25_mean_1m",
    "subject": ["device_id"],
    "ladder": [{"severity": "minor", "at": 80, "clear": 72}, {"severity": "major", "at": 150}],
    "for": "5m",
    "annotations": {"summary": {"vi": "PM2.5 {value}", "en": "PM2.5 {value}"}},
}


def write_rules(tmp_path: Path, *rules: dict[str, Any], **top: Any) -> Path:
    path = tmp_path / "rules.yaml"
    document = {"version": 1, "rules": list(rules), **top}
    path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    return path


def problems_of(tmp_path: Path, *rules: dict[str, Any], **top: Any) -> list[str]:
    path = write_rules(tmp_path, *rules, **top)
    with pytest.raises(RuleConfigError) as info:
        load_rules(path)
    assert all(p.startswith(str(path)) for p in info.value.problems)
    assert str(path) in str(info.value)
    return list(info.value.problems)


def with_(path: str, value: Any) -> dict[str, Any]:
    rule = copy.deepcopy(BASE)
    target: Any = rule
    keys = path.split(".")
    for key in keys[:-1]:
        target = target[int(key)] if key.isdigit() else target[key]
    last = keys[-1]
    if value is DELETE:
        del target[last]
    elif last.isdigit():
        target[int(last)] = value
    else:
        target[last] = value
    return rule


DELETE = object()


def test_base_rule_is_valid(tmp_path: Path) -> None:
    rules = load_rules(write_rules(tmp_path, BASE))
    assert rules["pm25_1m"].for_ == timedelta(minutes=5)


@pytest.mark.parametrize(
    ("rule", "field", "fragment"),
    [
        (with_("thresholds", 1), "thresholds", "unknown key(s) ['thresholds']"),
        (with_("for", "5 min"), "for", "bad duration '5 min'"),
        (with_("for", "5"), "for", "bad duration '5'"),
        (with_("for", 5), "for", "write a string with a unit"),
        (with_("for", "30m1h"), "for", "bad duration"),
        (with_("keep_firing_for", "-5m"), "keep_firing_for", "bad duration"),
        (with_("ladder.0.severity", "high"), "ladder[0].severity", "unknown severity 'high'"),
        (with_("ladder.1.at", 60), "ladder[1].at", "ladder not monotonic"),
        (with_("ladder.1.severity", "warning"), "ladder[1].severity", "ladder not monotonic"),
        (with_("ladder.0.clear", 85), "ladder[0].clear", "wrong side of the fire threshold 80"),
        (with_("ladder.0.at", "80"), "ladder[0].at", "must be a number"),
        (with_("ladder", []), "ladder", "non-empty list"),
        (with_("type", "anomaly"), "type", "unknown rule type 'anomaly'"),
        (with_("subject", DELETE), "subject", "list of label names"),
        (with_("subject", ["device id"]), "subject[0]", "bad label name"),
        (with_("metric", DELETE), "metric", "missing"),
        (with_("matchers", ["district~long-xuyen"]), "matchers[0]", "bad matcher"),
        (with_("matchers", ['district=~"long(["']), "matchers[0]", "invalid regex"),
        (
            with_("annotations.summary.vi", "{value.__class__}"),
            "annotations.summary.vi",
            "may not use '.'",
        ),
        (with_("annotations.summary.en", DELETE), "annotations.summary.en", "English"),
        (with_("annotations.summary", DELETE), "annotations.summary", "missing"),
        (with_("labels", {"alertname": "x"}), "labels.alertname", "reserved"),
        (with_("nodata_after", "0s"), "nodata_after", "must be positive"),
        (with_("name", "PM25 rule"), "name", "lower case"),
    ],
)
def test_validation_errors_name_file_rule_and_field(
    tmp_path: Path, rule: dict[str, Any], field: str, fragment: str
) -> None:
    [problem] = problems_of(tmp_path, rule)
    assert f"rule {rule['name']!r} (rules[0]), field '{field}'" in problem
    assert fragment in problem


def test_direction_below_needs_clear_at_or_above(tmp_path: Path) -> None:
    rule = with_("direction", "below")
    rule["ladder"] = [{"severity": "warning", "at": 4.0, "clear": 3.5}]
    [problem] = problems_of(tmp_path, rule)
    assert "field 'ladder[0].clear'" in problem
    assert "at or above" in problem


@pytest.mark.parametrize(
    ("rule", "field", "fragment"),
    [
        (
            {"type": "absence", "subject": ["device_id"], "intervals": 3, "severity": "warning"},
            "expected_interval",
            "needed with 'intervals'",
        ),
        (
            {
                "type": "absence",
                "subject": ["d"],
                "after": "5m",
                "intervals": 3,
                "expected_interval": "1m",
                "severity": "warning",
            },
            "after/intervals",
            "exactly one",
        ),
        (
            {
                "type": "absence",
                "subject": ["d"],
                "after": "5m",
                "severity": "warning",
                "nodata_after": "1h",
            },
            "nodata_after",
            "not meaningful",
        ),
        (
            {
                "type": "composite",
                "subject": ["d"],
                "metric": "pm25",
                "severity": "info",
                "condition": {"all": [{"metric": "pm25", "op": ">", "value": 1}]},
            },
            "metric",
            "not used by composite",
        ),
        (
            {
                "type": "composite",
                "subject": ["d"],
                "severity": "info",
                "condition": {"all": [{"metric": "pm25", "op": "=>", "value": 1}]},
            },
            "condition.all[0].op",
            "unknown operator",
        ),
        (
            {
                "type": "out_of_range",
                "metric": "level",
                "subject": ["d"],
                "min": 7,
                "max": 1,
                "severity": "warning",
            },
            "min/max",
            "must be below",
        ),
        (
            {
                "type": "sla",
                "metric": "feedback_response",
                "subject": ["t"],
                "ladder": [
                    {"severity": "minor", "overdue": "1d"},
                    {"severity": "major", "overdue": "1h"},
                ],
            },
            "ladder[1].at",
            "ladder not monotonic",
        ),
        (
            {
                "type": "rate_of_change",
                "metric": "level",
                "subject": ["d"],
                "window": "3h",
                "ladder": [{"severity": "minor", "at": 5}],
                "min_samples": 1,
            },
            "min_samples",
            "at least 2",
        ),
        (
            {
                "type": "threshold",
                "metric": "level",
                "subject": ["d"],
                "ladder_by": {
                    "label": "station",
                    "source": "flood_levels",
                    "severities": {"bd2": "major"},
                },
            },
            "ladder_by.severities",
            "at least bd1",
        ),
        (
            {
                "type": "flatline",
                "metric": "level",
                "subject": ["d"],
                "duration": "2h",
                "severity": "urgent",
            },
            "severity",
            "unknown severity 'urgent'",
        ),
    ],
)
def test_validation_errors_per_rule_type(
    tmp_path: Path, rule: dict[str, Any], field: str, fragment: str
) -> None:
    full = {"name": "r", "annotations": BASE["annotations"], **rule}
    [problem] = problems_of(tmp_path, full)
    assert f"field '{field}'" in problem
    assert fragment in problem


def test_every_problem_of_every_rule_is_listed(tmp_path: Path) -> None:
    problems = problems_of(
        tmp_path,
        with_("for", "5 min"),
        {**with_("ladder.0.severity", "high"), "name": "second"},
        BASE,
        version=2,
        extra=True,
    )
    assert len(problems) == 5
    joined = "\n".join(problems)
    assert "unsupported version 2" in joined
    assert "unknown top-level key(s) ['extra']" in joined
    assert "rule 'second' (rules[1]), field 'ladder[0].severity'" in joined
    assert "rule 'pm25_1m' (rules[2]), field 'name': duplicate rule name" in joined


def test_unreadable_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(RuleConfigError, match="cannot read"):
        load_rules(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules: [\n", encoding="utf-8")
    with pytest.raises(RuleConfigError, match="not valid YAML"):
        load_rules(bad)


def test_flood_levels_path_is_relative_to_the_rule_file(tmp_path: Path) -> None:
    (tmp_path / "levels.yaml").write_text(
        "version: 1\nstations:\n  - {id: lx, name: Long Xuyên, bd1_m: 1.9, bd2_m: 2.2}\n",
        encoding="utf-8",
    )
    rule = {
        "name": "level",
        "type": "threshold",
        "metric": "level",
        "subject": ["device_id"],
        "ladder_by": {
            "label": "station",
            "source": "flood_levels",
            "path": "levels.yaml",
            "severities": {"bd1": "warning", "bd2": "major"},
        },
        "annotations": BASE["annotations"],
    }
    spec = load_rules(write_rules(tmp_path, rule))["level"].spec
    assert isinstance(spec, ThresholdSpec)
    assert [(s.severity, s.at) for s in spec.ladders["lx"].steps] == [
        ("warning", 1.9),
        ("major", 2.2),
    ]


# --- durations ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("5m", timedelta(minutes=5)),
        ("1h", timedelta(hours=1)),
        ("1h30m", timedelta(minutes=90)),
        ("2d", timedelta(days=2)),
        ("1w", timedelta(weeks=1)),
        ("500ms", timedelta(milliseconds=500)),
        ("1m30s", timedelta(seconds=90)),
        ("0s", timedelta(0)),
    ],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "5", "5 min", "-5m", "1.5h", "30m1h", "5M", "1h 30m", "m"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="bad duration"):
        parse_duration(text)


@given(st.integers(min_value=0, max_value=10**12))
def test_duration_format_round_trip(ms: int) -> None:
    value = timedelta(milliseconds=ms)
    assert parse_duration(format_duration(value)) == value


# --- matchers -----------------------------------------------------------------------------------

LABELS = {"device_kind": "air_quality", "district": "long-xuyen", "ward": "my-binh"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('device_kind="air_quality"', True),
        ("device_kind=air_quality", True),
        ("device_kind!=river_gauge", True),
        ('district=~"long-xuyen|chau-doc"', True),
        ('district=~"long"', False),  # fully anchored
        ('district=~"long.*"', True),
        ('district!~"chau.*"', True),
        ('station=""', True),  # missing label is ""
        ('station!=""', False),
        ('station!="long-xuyen"', True),
        ('ward=~"my-.*"', True),
        ('ward!~"my-.*"', False),
    ],
)
def test_matcher_semantics(text: str, expected: bool) -> None:
    assert Matcher.parse(text).matches(LABELS) is expected


def test_matcher_quoting_and_rendering() -> None:
    matcher = Matcher.parse(r'name = "Trạm \"A\""')
    assert matcher.value == 'Trạm "A"'
    assert str(matcher) == r'name="Trạm \"A\""'
    assert matches_all([], LABELS)
    assert not matches_all([Matcher.parse("ward=my-binh"), Matcher.parse("district=x")], LABELS)


@pytest.mark.parametrize("text", ["district", "district~x", "1abc=x", 'district="open'])
def test_matcher_parse_errors(text: str) -> None:
    with pytest.raises(ValueError, match="bad"):
        Matcher.parse(text)


def test_rule_selects_by_metric_matchers_and_subject() -> None:
    rule = load_rules()["pm25_mean_1m"]
    good = {"device_id": "aq-lx-001", "device_kind": "air_quality"}
    assert rule.selects(Observation(good, "pm25_mean_1m", 1.0, T0))
    assert not rule.selects(Observation(good, "pm10_mean_1m", 1.0, T0))
    assert not rule.selects(Observation({**good, "device_kind": "traffic"}, "pm25_mean_1m", 1, T0))
    assert not rule.selects(Observation({"device_kind": "air_quality"}, "pm25_mean_1m", 1, T0))


# --- templates ----------------------------------------------------------------------------------


def test_render_fills_fields_and_shows_missing_and_bad_ones() -> None:
    context = {"value": 35.25, "ward": "Mỹ Bình"}
    assert render("PM2.5 {value:.1f} tại {ward}", context) == "PM2.5 35.2 tại Mỹ Bình"
    assert render("{station}: {value}", context) == "<missing:station>: 35.25"
    assert render("{ward:.1f}", context) == "<bad-format:ward>"
    assert render("{{literal}} {value:.0f}", context) == "{literal} 35"


@pytest.mark.parametrize(
    "template", ["{value.__class__}", "{labels[0]}", "{}", "{0}", "{value!r}", "{value:{w}}", "{x"]
)
def test_check_template_refuses_unsafe_or_broken_templates(template: str) -> None:
    with pytest.raises(TemplateError):
        check_template(template)


def test_check_template_returns_field_names() -> None:
    assert check_template("{ward} {value:.1f} {{x}}") == {"ward", "value"}


def test_annotations_render_severity_names_and_vars_in_both_languages() -> None:
    rule = load_rules()["vn_aqi_station"]
    labels = {"alertname": "vn_aqi_station", "device_id": "aq-lx-001", "ward": "my-binh"}
    context: dict[str, str | float] = {"threshold": 151.0, "level_vi": "Xấu", "level_en": "bad"}
    notes = render_annotations(rule, labels, "major", 163.0, "firing", context)
    assert (
        notes["summary_vi"] == "Chất lượng không khí Xấu tại trạm aq-lx-001 (my-binh): VN_AQI 163"
    )
    assert notes["summary_en"] == "Air quality bad at station aq-lx-001 (my-binh): VN_AQI 163"
    assert "mức Nghiêm trọng" in notes["description_vi"]
    assert "severity major" in notes["description_en"]
    assert notes["runbook_url"] == "docs/runbooks/air-quality.md"


# --- fingerprints -------------------------------------------------------------------------------


def test_fingerprint_follows_its_documented_definition() -> None:
    # The documented canonical form, hashed here independently: changing the algorithm would
    # re-key every stored alert, so this must fail loudly if anyone does.
    canonical = '["vn_aqi_station",[["device_id","aq-lx-001"],["metric","pm25"]]]'
    expected = hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]
    assert fingerprint("vn_aqi_station", {"metric": "pm25", "device_id": "aq-lx-001"}) == expected
    vietnamese = '["r",[["ward","mỹ-bình"]]]'
    expected = hashlib.sha256(vietnamese.encode("utf-8")).hexdigest()[:16]
    assert fingerprint("r", {"ward": "mỹ-bình"}) == expected


def test_fingerprint_ignores_label_order_and_depends_on_rule_and_values() -> None:
    a = fingerprint("r", {"device_id": "x", "metric": "pm25"})
    assert a == fingerprint("r", {"metric": "pm25", "device_id": "x"})
    assert a != fingerprint("r2", {"device_id": "x", "metric": "pm25"})
    assert a != fingerprint("r", {"device_id": "x", "metric": "pm10"})
    assert len(a) == 16
    assert int(a, 16) >= 0


def test_fingerprint_ignores_non_identifying_labels() -> None:
    rule = load_rules()["pm25_mean_1m"]
    base = {"device_id": "aq-lx-001", "device_kind": "air_quality", "ward": "my-binh"}
    moved = {**base, "ward": "my-long"}
    first, _ = observe(None, rule, Observation(base, "pm25_mean_1m", 10, T0), T0)
    second, _ = observe(None, rule, Observation(moved, "pm25_mean_1m", 10, T0), T0)
    assert first.fingerprint == second.fingerprint
