"""Routing file validation, routing with ``continue``, matchers, durations and mute windows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from connectors.notify.config import (
    DEFAULT_ROUTES_PATH,
    NotifyConfigError,
    load_config,
    parse_config,
)
from connectors.notify.labels import Matcher, parse_duration
from connectors.notify.schedule import TimeWindow


def _doc(**route: Any) -> dict[str, Any]:
    return {
        "version": 1,
        "receivers": [
            {"name": "a", "type": "webhook", "url": "http://127.0.0.1:1/a"},
            {"name": "b", "type": "webhook", "url": "http://127.0.0.1:1/b"},
            {"name": "c", "type": "webhook", "url": "http://127.0.0.1:1/c"},
        ],
        "route": {"receiver": "a", **route},
    }


def test_the_shipped_routing_file_is_valid() -> None:
    config = load_config(DEFAULT_ROUTES_PATH)
    assert "ioc-console" in config.receivers
    flood = {
        "alertname": "river_level_alarm",
        "team": "phong-chong-thien-tai",
        "station": "long-xuyen",
        "severity": "major",
        "state": "firing",
    }
    assert [r.receiver for r in config.route.match(flood)] == [
        "ioc-console",
        "phong-chong-thien-tai",
    ]


def test_routing_tree_with_continue_and_inheritance() -> None:
    config = parse_config(
        _doc(
            group_by=["district"],
            group_wait="10s",
            routes=[
                {
                    "matchers": ['team="x"'],
                    "receiver": "b",
                    "continue": True,
                    "routes": [{"matchers": ['severity="critical"'], "receiver": "c"}],
                },
                {"matchers": ['district=~"lx|cd"'], "receiver": "c", "group_by": ["ward"]},
                {"matchers": ['team="x"'], "receiver": "a"},
            ],
        )
    )
    route = config.route
    hits = route.match({"team": "x", "severity": "critical", "district": "lx"})
    assert [(r.receiver, r.id) for r in hits] == [
        ("c", "route.routes[0].routes[0]"),
        ("c", "route.routes[1]"),
    ]
    assert hits[0].group_wait == timedelta(seconds=10)  # inherited
    assert hits[0].group_key({"district": "lx"}) == (("district", "lx"),)
    assert hits[1].group_key({"ward": "w"}) == (("ward", "w"),)
    assert [r.receiver for r in route.match({"team": "x", "district": "q"})] == ["b", "a"]
    assert route.match({"team": "y"}) == [route]


def test_every_problem_is_reported_with_its_place() -> None:
    doc = _doc(
        routes=[
            {"matchers": ["bad matcher"], "receiver": "nobody"},
            {"receiver": "a", "group_wait": "soon", "mute_time_intervals": ["never"]},
            {"receiver": "a", "escalate": {"after": "1h", "receiver": "ghost"}, "colour": 1},
        ]
    )
    doc["receivers"].append({"name": "m", "type": "email", "to": ["x@y"]})
    doc["receivers"].append({"name": "a", "type": "webhook", "url": "ftp://x"})
    with pytest.raises(NotifyConfigError) as err:
        parse_config(doc, "routes.yaml")
    text = str(err.value)
    for expected in (
        "routes.yaml",
        "route.routes[0].matchers: bad matcher 'bad matcher'",
        "route.routes[0].receiver: unknown receiver 'nobody'",
        "route.routes[1].group_wait: bad duration 'soon'",
        "route.routes[1].mute_time_intervals: unknown time interval 'never'",
        "route.routes[2]: unknown key(s) ['colour']",
        "receivers[3]: to, from and smarthost",
        "receivers[4]: url must be an http(s) URL",
    ):
        assert expected in text


def test_root_route_must_not_have_matchers_and_version_is_required() -> None:
    doc = _doc(matchers=['a="b"'])
    doc["version"] = 2
    with pytest.raises(NotifyConfigError, match=r"version: must be 1.*\n.*root route"):
        parse_config(doc)


def test_matchers_and_durations() -> None:
    assert Matcher.parse('ward=""').matches({})
    assert Matcher.parse("ward!=x").matches({})
    assert not Matcher.parse('district=~"long"').matches({"district": "long-xuyen"})
    assert Matcher.parse('district=~"long.*"').matches({"district": "long-xuyen"})
    assert Matcher.parse('severity!~"info|warning"').matches({"severity": "major"})
    assert parse_duration("1h30m") == timedelta(minutes=90)
    for bad in ("5", "5 minutes", "", 5):
        with pytest.raises(ValueError, match="bad duration"):
            parse_duration(bad)


def test_mute_window_wraps_past_midnight_in_local_time() -> None:
    night = TimeWindow.parse(
        {"name": "n", "weekdays": ["fri"], "times": [{"start": "22:00", "end": "06:00"}]}, "w"
    )
    # 2026-11-27 is a Friday; Asia/Ho_Chi_Minh is UTC+7
    assert night.active(datetime(2026, 11, 27, 15, 0, tzinfo=UTC))  # Fri 22:00 local
    assert night.active(datetime(2026, 11, 27, 22, 59, tzinfo=UTC))  # Sat 05:59 local
    assert not night.active(datetime(2026, 11, 27, 23, 0, tzinfo=UTC))  # Sat 06:00 local
    assert not night.active(datetime(2026, 11, 28, 15, 0, tzinfo=UTC))  # Sat 22:00 local
    assert not night.active(datetime(2026, 11, 27, 14, 59, tzinfo=UTC))  # Fri 21:59 local
    with pytest.raises(ValueError, match="HH:MM"):
        TimeWindow.parse({"name": "x", "times": [{"start": "9", "end": "10:00"}]}, "w")


def test_commands_have_help(capsys: pytest.CaptureFixture[str]) -> None:
    from connectors.notify.cli import run, run_silence

    assert run(["--help"]) == 0
    assert "routing tree" in capsys.readouterr().out
    assert run_silence(["--help"]) == 0
    assert run_silence(["add", "--help"]) == 0
    assert "matchers" in capsys.readouterr().out
    assert run(["--check", "--routes", str(DEFAULT_ROUTES_PATH)]) == 0
    assert "valid" in capsys.readouterr().out


def test_a_bad_routing_file_stops_the_notifier(
    tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    from connectors.notify.cli import run

    bad = tmp_path / "routes.yaml"
    bad.write_text("version: 1\nroute: {receiver: nobody}\n", encoding="utf-8")
    assert run(["--check", "--routes", str(bad)]) == 2
    assert "unknown receiver 'nobody'" in caplog.text
