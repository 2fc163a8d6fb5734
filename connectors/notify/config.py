"""The notifier's routing configuration (``deploy/alerts/routes.yaml``), validated at start.

:func:`load_config` reads the file and raises :class:`NotifyConfigError` listing **every**
problem with its place (``route.routes[1].receiver: unknown receiver 'x'``). Format: see the
comments at the top of ``deploy/alerts/routes.yaml``.

Routing (Alertmanager's): the root route matches every alert. Its children are tried in order;
an alert goes to the first child that matches and, if that child has ``continue: true``, also
to the next matching ones. Matching recurses into the children's children; a route none of
whose children match handles the alert itself. Children inherit ``receiver``, ``group_by``,
the three intervals, ``mute_time_intervals`` and ``escalate`` unless they set them.

Secrets are never in the file: receivers name the environment variables that hold them
(``token_env``, ``password_env``, ``routing_key_env``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Final, Literal, TypeVar

import yaml

from connectors.notify.labels import Matcher, matches_all, parse_duration, parse_matchers
from connectors.notify.schedule import TimeWindow

DEFAULT_ROUTES_PATH: Final = Path(__file__).resolve().parents[2] / "deploy/alerts/routes.yaml"
ReceiverType = Literal["webhook", "email", "telegram", "pagerduty"]
RECEIVER_TYPES: Final = ("webhook", "email", "telegram", "pagerduty")
T = TypeVar("T")


class NotifyConfigError(ValueError):
    """The routing file is invalid; ``problems`` lists every problem found."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: {len(problems)} problem(s):\n  " + "\n  ".join(problems))


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most ``count`` notifications per ``per`` (token bucket, burst = ``count``)."""

    count: int
    per: timedelta


@dataclass(frozen=True, slots=True)
class Receiver:
    """Where notifications go and how; secrets are names of environment variables."""

    name: str
    type: ReceiverType
    url: str = ""
    send_resolved: bool = True
    token_env: str | None = None
    rate_limit: RateLimit | None = None
    max_attempts: int = 5
    timeout: timedelta = timedelta(seconds=10)
    chat_id: str = ""
    to: tuple[str, ...] = ()
    sender: str = ""
    smarthost: str = ""
    username: str = ""
    password_env: str | None = None
    starttls: bool = False
    routing_key_env: str | None = None


@dataclass(frozen=True, slots=True)
class Escalation:
    """Notify ``receiver`` about an alert still unacknowledged ``after`` it fired."""

    after: timedelta
    receiver: str


@dataclass(frozen=True, slots=True)
class Route:
    """One node of the routing tree (inherited settings already filled in)."""

    id: str
    receiver: str
    group_by: tuple[str, ...]
    group_wait: timedelta
    group_interval: timedelta
    repeat_interval: timedelta
    matchers: tuple[Matcher, ...] = ()
    continue_: bool = False
    mute_time_intervals: tuple[str, ...] = ()
    escalate: Escalation | None = None
    routes: tuple[Route, ...] = ()

    def match(self, labels: Mapping[str, str]) -> list[Route]:
        """The routes that handle an alert with ``labels`` (this one assumed to match)."""
        found: list[Route] = []
        for child in self.routes:
            if matches_all(child.matchers, labels):
                found += child.match(labels)
                if not child.continue_:
                    break
        return found or [self]

    def group_key(self, labels: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
        """The group an alert joins on this route (``group_by: ['...']`` = every label but
        ``state``, so that an alert keeps its group when it resolves)."""
        if self.group_by == ("...",):
            return tuple(sorted((k, v) for k, v in labels.items() if k != "state"))
        return tuple((n, labels.get(n, "")) for n in self.group_by)


@dataclass(frozen=True, slots=True)
class InhibitRule:
    """Targets are muted while a source alert is firing with the same ``equal`` labels."""

    source: tuple[Matcher, ...]
    target: tuple[Matcher, ...]
    equal: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class NotifyConfig:
    """The whole routing file."""

    route: Route
    receivers: Mapping[str, Receiver]
    windows: Mapping[str, TimeWindow] = field(default_factory=dict)
    inhibit: tuple[InhibitRule, ...] = ()
    source: str = "<routes>"


class _Collector:
    def __init__(self) -> None:
        self.problems: list[str] = []

    def get(self, where: str, build: Callable[[], T], default: T) -> T:
        try:
            return build()
        except (ValueError, TypeError, KeyError) as exc:
            self.problems.append(f"{where}: {exc}")
            return default


def _keys(obj: object, allowed: set[str], where: str) -> Mapping[str, Any]:
    if not isinstance(obj, dict):
        raise TypeError(f"must be a mapping, got {type(obj).__name__}")
    unknown = set(obj) - allowed
    if unknown:
        raise ValueError(f"unknown key(s) {sorted(unknown)} (allowed: {sorted(allowed)})")
    return obj


_RECEIVER_KEYS: Final = {
    "name",
    "type",
    "url",
    "send_resolved",
    "token_env",
    "rate_limit",
    "max_attempts",
    "timeout",
    "chat_id",
    "to",
    "from",
    "smarthost",
    "username",
    "password_env",
    "starttls",
    "routing_key_env",
}


def _receiver(obj: Mapping[str, Any]) -> Receiver:
    kind = obj.get("type")
    if kind not in RECEIVER_TYPES:
        raise ValueError(f"type must be one of {RECEIVER_TYPES}, got {kind!r}")
    name = obj.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError("name is required")
    limit = None
    if "rate_limit" in obj:
        rl = _keys(obj["rate_limit"], {"count", "per"}, "rate_limit")
        if not isinstance(rl.get("count"), int) or rl["count"] < 1:
            raise ValueError("rate_limit.count must be a positive integer")
        limit = RateLimit(rl["count"], parse_duration(rl.get("per")))
    to = obj.get("to", [])
    if isinstance(to, str):
        to = [to]
    receiver = Receiver(
        name=name,
        type=kind,
        url=str(obj.get("url", "")),
        send_resolved=bool(obj.get("send_resolved", True)),
        token_env=obj.get("token_env"),
        rate_limit=limit,
        max_attempts=int(obj.get("max_attempts", 5)),
        timeout=parse_duration(obj.get("timeout", "10s")),
        chat_id=str(obj.get("chat_id", "")),
        to=tuple(str(t) for t in to),
        sender=str(obj.get("from", "")),
        smarthost=str(obj.get("smarthost", "")),
        username=str(obj.get("username", "")),
        password_env=obj.get("password_env"),
        starttls=bool(obj.get("starttls", False)),
        routing_key_env=obj.get("routing_key_env"),
    )
    if receiver.max_attempts < 1:
        raise ValueError("max_attempts must be at least 1")
    if kind in ("webhook", "telegram", "pagerduty") and not receiver.url.startswith(
        ("http://", "https://")
    ):
        raise ValueError(f"url must be an http(s) URL for a {kind} receiver")
    if kind == "telegram" and not receiver.chat_id:
        raise ValueError("chat_id is required for a telegram receiver")
    if kind == "email" and not (receiver.to and receiver.sender and receiver.smarthost):
        raise ValueError("to, from and smarthost (host:port) are required for email")
    if kind == "pagerduty" and not receiver.routing_key_env:
        raise ValueError("routing_key_env is required for a pagerduty receiver")
    return receiver


_ROUTE_KEYS: Final = {
    "receiver",
    "matchers",
    "group_by",
    "group_wait",
    "group_interval",
    "repeat_interval",
    "continue",
    "routes",
    "mute_time_intervals",
    "escalate",
}


def _route(obj: object, where: str, parent: Route | None, c: _Collector) -> Route:
    body: Mapping[str, Any] = {}
    try:
        body = _keys(obj, _ROUTE_KEYS, where)
    except (TypeError, ValueError) as exc:
        c.problems.append(f"{where}: {exc}")

    def dur(key: str, inherited: timedelta) -> timedelta:
        if key not in body:
            return inherited
        return c.get(f"{where}.{key}", lambda: parse_duration(body[key]), inherited)

    escalate = parent.escalate if parent else None
    if "escalate" in body:
        try:
            esc = _keys(body["escalate"], {"after", "receiver"}, "")
            escalate = Escalation(parse_duration(esc.get("after")), str(esc["receiver"]))
        except (TypeError, ValueError, KeyError) as exc:
            c.problems.append(f"{where}.escalate: {exc}")
    group_by = body.get("group_by", list(parent.group_by) if parent else ["alertname"])
    if not isinstance(group_by, list) or not all(isinstance(g, str) for g in group_by):
        c.problems.append(f"{where}.group_by: must be a list of label names")
        group_by = ["alertname"]
    mutes = body.get("mute_time_intervals", list(parent.mute_time_intervals) if parent else [])
    route = Route(
        id=where,
        receiver=str(body.get("receiver", parent.receiver if parent else "")),
        group_by=tuple(group_by),
        group_wait=dur("group_wait", parent.group_wait if parent else timedelta(seconds=30)),
        group_interval=dur(
            "group_interval", parent.group_interval if parent else timedelta(minutes=5)
        ),
        repeat_interval=dur(
            "repeat_interval", parent.repeat_interval if parent else timedelta(hours=4)
        ),
        matchers=c.get(f"{where}.matchers", lambda: parse_matchers(body.get("matchers", [])), ()),
        continue_=bool(body.get("continue", False)),
        mute_time_intervals=tuple(str(m) for m in mutes),
        escalate=escalate,
    )
    children = body.get("routes", [])
    if not isinstance(children, list):
        c.problems.append(f"{where}.routes: must be a list")
        children = []
    subs = tuple(_route(ch, f"{where}.routes[{i}]", route, c) for i, ch in enumerate(children))
    return Route(**{**{f: getattr(route, f) for f in route.__slots__}, "routes": subs})


def _walk(route: Route) -> list[Route]:
    return [route, *(r for child in route.routes for r in _walk(child))]


def _inhibit_rule(obj: Mapping[str, Any]) -> InhibitRule:
    equal = obj.get("equal", [])
    if not isinstance(equal, list) or not all(isinstance(e, str) for e in equal):
        raise ValueError("equal must be a list of label names")
    return InhibitRule(
        parse_matchers(obj.get("source_matchers")),
        parse_matchers(obj.get("target_matchers")),
        tuple(equal),
    )


_TOP_KEYS: Final = {"version", "receivers", "route", "time_intervals", "inhibit_rules"}
_WINDOW_KEYS: Final = {"name", "weekdays", "times", "timezone"}
_INHIBIT_KEYS: Final = {"source_matchers", "target_matchers", "equal"}


def parse_config(document: object, source: str = "<routes>") -> NotifyConfig:
    """Validate a parsed routing document; :class:`NotifyConfigError` lists every problem."""
    c = _Collector()
    top: Mapping[str, Any] = {}
    try:
        top = _keys(document, _TOP_KEYS, "(top)")
    except (TypeError, ValueError) as exc:
        c.problems.append(f"(top): {exc}")
    if top.get("version") != 1:
        c.problems.append(f"version: must be 1, got {top.get('version')!r}")
    receivers: dict[str, Receiver] = {}
    for i, obj in enumerate(top.get("receivers") or []):
        try:
            rec = _receiver(_keys(obj, _RECEIVER_KEYS, ""))
        except (TypeError, ValueError, KeyError) as exc:
            c.problems.append(f"receivers[{i}]: {exc}")
            continue
        if rec.name in receivers:
            c.problems.append(f"receivers[{i}].name: duplicate receiver {rec.name!r}")
        receivers[rec.name] = rec
    windows: dict[str, TimeWindow] = {}
    for i, obj in enumerate(top.get("time_intervals") or []):
        try:
            win = TimeWindow.parse(_keys(obj, _WINDOW_KEYS, ""), f"time_intervals[{i}]")
        except (TypeError, ValueError) as exc:
            c.problems.append(
                str(exc) if str(exc).startswith("time_") else f"time_intervals[{i}]: {exc}"
            )
            continue
        windows[win.name] = win
    inhibit: list[InhibitRule] = []
    for i, obj in enumerate(top.get("inhibit_rules") or []):
        try:
            inhibit.append(_inhibit_rule(_keys(obj, _INHIBIT_KEYS, "")))
        except (TypeError, ValueError) as exc:
            c.problems.append(f"inhibit_rules[{i}]: {exc}")
    if "route" not in top:
        c.problems.append("route: the root route is required")
    root = _route(top.get("route", {}), "route", None, c)
    if root.matchers:
        c.problems.append("route.matchers: the root route matches every alert; give none")
    for r in _walk(root):
        if r.receiver not in receivers:
            c.problems.append(f"{r.id}.receiver: unknown receiver {r.receiver!r}")
        if r.escalate is not None and r.escalate.receiver not in receivers:
            c.problems.append(f"{r.id}.escalate.receiver: unknown {r.escalate.receiver!r}")
        for m in r.mute_time_intervals:
            if m not in windows:
                c.problems.append(f"{r.id}.mute_time_intervals: unknown time interval {m!r}")
    if c.problems:
        raise NotifyConfigError(source, c.problems)
    return NotifyConfig(root, receivers, windows, tuple(inhibit), source)


def load_config(path: Path | str = DEFAULT_ROUTES_PATH) -> NotifyConfig:
    """Read and validate a routing file; :class:`NotifyConfigError` on any problem."""
    file = Path(path)
    try:
        document = yaml.safe_load(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise NotifyConfigError(str(file), [f"cannot read: {exc}"]) from None
    except yaml.YAMLError as exc:
        raise NotifyConfigError(str(file), [f"not valid YAML: {exc}"]) from None
    return parse_config(document, str(file))
