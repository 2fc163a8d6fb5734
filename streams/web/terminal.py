"""The live terminal view of ``iocstream up``: pure rendering with rich (no I/O here).

:func:`render` builds one screen from plain data — the district tiles of
:mod:`streams.web.tiles`, the newest alerts as the web API lists them, throughput figures and
the children's status — so it is unit-tested without a stack.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

SEVERITY_STYLE: Final = {
    "critical": "bold white on red",
    "major": "bold red",
    "minor": "yellow",
    "warning": "cyan",
    "info": "dim",
}
ALARM_STYLE: Final = {0: "green", 1: "yellow", 2: "bold dark_orange", 3: "bold white on red"}


@dataclass(frozen=True, slots=True)
class Throughput:
    """Readings landed in ClickHouse over the last minute, and the newest one's age."""

    per_second: float | None
    lag_s: float | None


def _aqi(part: Mapping[str, Any] | None) -> Text:
    if not part:
        return Text("–", style="dim")
    style = f"black on {part['colour']}"
    if part["band"] in ("very_bad", "hazardous"):
        style = f"white on {part['colour']}"
    mark = "" if part.get("source") == "vn_aqi" else "≈"
    return Text(f" {mark}{part['value']} {part['label_vi']} ", style=style)


def _river(part: Mapping[str, Any] | None) -> Text:
    if not part:
        return Text("–", style="dim")
    text = f"{part['station']} {part['level_m']:.2f} m · {part['label_vi']}"
    return Text(text, style=ALARM_STYLE.get(int(part["alarm"]), ""))


def districts_table(tiles: Sequence[Mapping[str, Any]]) -> Table:
    """One row per district: VN_AQI band, highest river level, services, devices."""
    table = Table(title="Địa bàn / Districts", expand=True, title_justify="left")
    for col in ("district", "VN_AQI", "river (BĐ)", "services on time", "devices"):
        table.add_column(col)
    for tile in tiles:
        services = tile.get("services")
        devices = tile.get("devices")
        dev_text = Text("–", style="dim")
        if devices:
            low = devices["reporting"] < devices["expected"]
            dev_text = Text(
                f"{devices['reporting']}/{devices['expected']}", style="yellow" if low else "green"
            )
        table.add_row(
            tile["district"],
            _aqi(tile.get("aqi")),
            _river(tile.get("river")),
            f"{services['on_time_pct']:.1f} %" if services else Text("–", style="dim"),
            dev_text,
        )
    return table


def alerts_table(alerts: Sequence[Mapping[str, Any]], limit: int = 10) -> Table:
    """The newest alerts (as ``/api/alerts`` lists them, newest first)."""
    table = Table(title="Cảnh báo mới nhất / Newest alerts", expand=True, title_justify="left")
    for col in ("changed (UTC)", "severity", "state", "district", "summary", "ack"):
        table.add_column(col, overflow="fold")
    for alert in alerts[:limit]:
        severity = alert.get("severity") or "info"
        table.add_row(
            str(alert.get("changed_at", ""))[:19].replace("T", " "),
            Text(severity, style=SEVERITY_STYLE.get(severity, "")),
            alert.get("state", ""),
            alert.get("district", ""),
            alert.get("summary_vi", alert.get("rule", "")),
            alert.get("acknowledged_by") or "",
        )
    if not alerts:
        table.add_row("", "", "", "", Text("không có cảnh báo / no alerts", style="dim"), "")
    return table


def render(
    *,
    url: str,
    token: str,
    children: Mapping[str, str],
    tiles: Sequence[Mapping[str, Any]],
    alerts: Sequence[Mapping[str, Any]] | None,
    throughput: Throughput,
) -> RenderableType:
    """The whole screen. ``alerts=None`` means the web page could not be asked (yet)."""
    status = "  ".join(
        f"[green]{n}[/]" if s == "up" else f"[red]{n}: {s}[/]" for n, s in children.items()
    )
    rate = "–" if throughput.per_second is None else f"{throughput.per_second:,.1f} readings/s"
    lag = "–" if throughput.lag_s is None else f"{throughput.lag_s:,.1f} s"
    header = Panel(
        f"[bold]Web:[/] {url}#token={token}\n"
        f"[bold]Token:[/] {token}\n"
        f"[bold]Throughput (1 min):[/] {rate}   [bold]newest reading age:[/] {lag}\n"
        f"[bold]Processes:[/] {status}",
        title="iocstream up",
        title_align="left",
    )
    alert_part: RenderableType = (
        alerts_table(alerts)
        if alerts is not None
        else Text("alerts: web page not reachable yet", style="dim")
    )
    return Group(header, districts_table(tiles), alert_part)
