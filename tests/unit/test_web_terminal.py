"""The terminal view of ``iocstream up`` and its list of children."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

from rich.console import Console

from streams.cli.up import children
from streams.web.terminal import Throughput, render
from streams.web.tiles import aqi_part

AT = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)


def _text(**overrides: object) -> str:
    kwargs: dict[str, object] = {
        "url": "http://127.0.0.1:8088/",
        "token": "tok-123",
        "children": {"bridge": "up", "sink": "exit 1"},
        "tiles": [
            {
                "district": "long-xuyen",
                "aqi": aqi_part(162, "vn_aqi", AT),
                "river": {
                    "station": "Long Xuyên",
                    "level_m": 2.31,
                    "alarm": 2,
                    "label_vi": "BĐ II",
                    "label_en": "alarm level II",
                },
                "services": {"on_time_pct": 91.25, "at": None},
                "devices": {"reporting": 19, "expected": 21},
            },
            {"district": "an-phu", "aqi": None, "river": None, "services": None, "devices": None},
        ],
        "alerts": [
            {
                "changed_at": "2026-11-28T09:00:00.000000Z",
                "severity": "critical",
                "state": "firing",
                "district": "long-xuyen",
                "summary_vi": "Ngập: Long Xuyên vượt BĐ II",
                "acknowledged_by": "An",
            }
        ],
        "throughput": Throughput(123.4, 0.8),
    }
    kwargs.update(overrides)
    console = Console(record=True, width=200, color_system=None)
    console.print(render(**kwargs))  # type: ignore[arg-type]
    return console.export_text()


def test_view_shows_url_token_districts_alerts_and_throughput() -> None:
    text = _text()
    assert "http://127.0.0.1:8088/#token=tok-123" in text
    assert "162 Xấu" in text
    assert "Long Xuyên 2.31 m · BĐ II" in text
    assert "91.2 %" in text
    assert "19/21" in text
    assert "Ngập: Long Xuyên vượt BĐ II" in text
    assert "critical" in text
    assert "123.4 readings/s" in text
    assert "sink: exit 1" in text
    assert "an-phu" in text


def test_view_without_alerts_or_data() -> None:
    text = _text(alerts=None, tiles=[], throughput=Throughput(None, None))
    assert "web page not reachable yet" in text
    assert "no alerts" not in text
    assert "no alerts" in _text(alerts=[])


def test_children_include_web_with_its_token_in_the_environment_only() -> None:
    args = argparse.Namespace(devices=3, interval=5.0, rate=2.0, no_simulator=False)
    plan = children(args, "secret-token", 18088)
    names = [c.name for c in plan]
    assert names[:3] == ["bridge", "worker", "sink"]
    assert {"alerter", "notifier", "web", "simulator"} <= set(names)
    web = next(c for c in plan if c.name == "web")
    assert web.command == ["web", "--port", "18088"]
    assert web.env == {"IOC_WEB_TOKEN": "secret-token"}
    assert all("secret-token" not in " ".join(c.command) for c in plan)
    no_sim = children(argparse.Namespace(**{**vars(args), "no_simulator": True}), "t", 1)
    assert "simulator" not in [c.name for c in no_sim]
