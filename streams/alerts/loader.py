"""Load and validate alert rules from YAML (default ``deploy/alerts/rules.yaml``).

The file format is documented at the top of ``deploy/alerts/rules.yaml``. Guarantees:

* Validation is complete before anything runs: unknown keys, missing keys, wrong types, bad
  durations (``5 min``, ``5``), unknown severities or rule types, non-monotonic ladders, a clear
  threshold on the wrong side of its fire threshold, bad matchers or regexes, unsafe templates,
  duplicate names.
* Every problem of every rule is collected; :class:`RuleConfigError` lists them all, each
  naming the file, the rule (name and index) and the field, e.g.
  ``deploy/alerts/rules.yaml: rule 'pm25' (rules[2]), field 'for': bad duration '5 min' ...``.
* A ``ladder_by`` with ``source: flood_levels`` builds one ladder per gauge station from the
  flood alarm levels (BĐ I/II/III) read by :func:`streams.flood.load_flood_levels`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any, Final, Literal, NoReturn, TypeVar

import yaml

from schemas.alerts import SEVERITIES, Severity
from streams.alerts.durations import parse_duration
from streams.alerts.matchers import LABEL_NAME, Matcher
from streams.alerts.rules import (
    RULE_KINDS,
    AbsenceSpec,
    CompareOp,
    CompositeSpec,
    Direction,
    FlatLineSpec,
    Group,
    Ladder,
    Leaf,
    RangeSpec,
    RateSpec,
    Rule,
    RuleKind,
    RuleSet,
    SlaSpec,
    Spec,
    Step,
    ThresholdSpec,
)
from streams.alerts.templates import TemplateError, check_template
from streams.flood import DEFAULT_FLOOD_LEVELS_PATH, FloodConfigError, load_flood_levels

DEFAULT_RULES_PATH: Final = Path(__file__).resolve().parents[2] / "deploy" / "alerts" / "rules.yaml"

_COMMON: Final = frozenset(
    {
        "name",
        "type",
        "description",
        "metric",
        "matchers",
        "subject",
        "carry",
        "labels",
        "annotations",
        "for",
        "keep_firing_for",
        "nodata_after",
        "repeat_every",
    }
)
_BY_KIND: Final[Mapping[str, frozenset[str]]] = {
    "threshold": frozenset({"direction", "ladder", "ladder_by"}),
    "rate_of_change": frozenset(
        {"direction", "ladder", "window", "per", "scale", "unit", "min_samples"}
    ),
    "flatline": frozenset({"duration", "tolerance", "severity"}),
    "out_of_range": frozenset({"min", "max", "severity"}),
    "absence": frozenset({"after", "intervals", "expected_interval", "severity"}),
    "sla": frozenset({"ladder"}),
    "composite": frozenset({"condition", "max_age", "severity"}),
}
_RULE_NAME: Final = re.compile(r"[a-z][a-z0-9_.-]*")
_OPS: Final = (">", ">=", "<", "<=", "==", "!=")
_RESERVED_LABELS: Final = frozenset({"alertname", "severity"})
T = TypeVar("T")


class RuleConfigError(ValueError):
    """The rule file cannot be read or is invalid; ``problems`` lists every problem found."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = tuple(problems)
        listing = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{source}: {len(problems)} problem(s) in alert rules:\n{listing}")


class _Problem(Exception):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def _fail(field: str, message: str) -> NoReturn:
    raise _Problem(field, message)


def _built(field: str, build: Callable[[], T]) -> T:
    """Run a dataclass constructor; turn its ``"sub.field: text"`` ValueError into a problem."""
    try:
        return build()
    except ValueError as exc:
        path, sep, text = str(exc).partition(": ")
        if sep and path.startswith("ladder") and field:
            _fail(field + path[len("ladder") :], text)
        if sep and re.fullmatch(r"[a-z_/.\[\]0-9]+", path):
            _fail(f"{field}.{path}" if field else path, text)
        _fail(field or "rule", str(exc))


def _duration(obj: Mapping[str, Any], key: str, default: timedelta | None = None) -> timedelta:
    if key not in obj:
        if default is None:
            _fail(key, "missing (a duration, e.g. 90s, 5m, 1h)")
        return default
    try:
        return parse_duration(obj[key])
    except ValueError as exc:
        _fail(key, str(exc))


def _opt_duration(obj: Mapping[str, Any], key: str) -> timedelta | None:
    return None if obj.get(key) is None else _duration(obj, key)


def _number(value: object, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        _fail(field, f"must be a number, got {value!r}")
    return float(value)


def _string(value: object, field: str) -> str:
    if not isinstance(value, str):
        _fail(field, f"must be a string, got {value!r}")
    return value


def _severity(value: object, field: str) -> Severity:
    if value not in SEVERITIES:
        known = ", ".join(reversed(SEVERITIES))
        _fail(field, f"unknown severity {value!r}; expected one of {known}")
    return value


def _mapping(value: object, field: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        _fail(field, f"must be a mapping, got {value!r}")
    return value


def _label_names(value: object, field: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        _fail(field, f"must be a list of label names, got {value!r}")
    for i, name in enumerate(value):
        if not LABEL_NAME.fullmatch(name):
            _fail(f"{field}[{i}]", f"bad label name {name!r}")
    return tuple(value)


def _str_map(value: object, field: str) -> dict[str, str]:
    mapping = _mapping(value, field)
    for key, item in mapping.items():
        if not isinstance(key, str) or not isinstance(item, str):
            _fail(f"{field}.{key}", f"must be a string, got {item!r}")
    return dict(mapping)


def _unknown_keys(obj: Mapping[str, Any], allowed: frozenset[str], field: str) -> None:
    unknown = sorted(str(k) for k in obj if k not in allowed)
    if unknown:
        _fail(field or unknown[0], f"unknown key(s) {unknown}; allowed: {sorted(allowed)}")


def _steps(value: object, field: str, direction: Direction, *, overdue: bool = False) -> Ladder:
    if not isinstance(value, list) or not value:
        _fail(field, "must be a non-empty list of steps like {severity: minor, at: 101}")
    steps: list[Step] = []
    allowed = frozenset({"severity", "overdue" if overdue else "at", "clear", "label"})
    for i, raw in enumerate(value):
        where = f"{field}[{i}]"
        item = _mapping(raw, where)
        _unknown_keys(item, allowed - ({"clear"} if overdue else set()), where)
        severity = _severity(item.get("severity"), f"{where}.severity")
        if overdue:
            at = _duration(item, "overdue") / timedelta(seconds=1)
            clear = at
        else:
            if "at" not in item:
                _fail(f"{where}.at", "missing (the value at which this severity fires)")
            at = _number(item["at"], f"{where}.at")
            clear = _number(item.get("clear", at), f"{where}.clear")
        label = _str_map(item.get("label", {}), f"{where}.label")
        _unknown_keys(label, frozenset({"vi", "en"}), f"{where}.label")
        steps.append(Step(severity, at, clear, label.get("vi", ""), label.get("en", "")))
    return _built(field, lambda: Ladder(tuple(steps), direction))


def _flood_ladders(
    by: Mapping[str, Any], base_dir: Path, flood_levels: Mapping[str, Any] | None
) -> dict[str, Ladder]:
    _unknown_keys(by, frozenset({"label", "source", "path", "severities", "clear_margin"}), "")
    if flood_levels is None:
        path = base_dir / by["path"] if "path" in by else DEFAULT_FLOOD_LEVELS_PATH
        try:
            flood_levels = load_flood_levels(path)
        except FloodConfigError as exc:
            _fail("ladder_by.path", str(exc))
    severities = _str_map(by.get("severities", {}), "ladder_by.severities")
    _unknown_keys(severities, frozenset({"bd1", "bd2", "bd3"}), "ladder_by.severities")
    if "bd1" not in severities:
        _fail("ladder_by.severities", "must give at least bd1 (e.g. {bd1: minor})")
    margin = _number(by.get("clear_margin", 0.0), "ladder_by.clear_margin")
    if margin < 0:
        _fail("ladder_by.clear_margin", "must be >= 0")
    ladders: dict[str, Ladder] = {}
    for station_id, gauge in flood_levels.items():
        steps = []
        for level, metres in gauge.thresholds():
            key = f"bd{level.value}"
            if key in severities:
                severity = _severity(severities[key], f"ladder_by.severities.{key}")
                steps.append(
                    Step(
                        severity, metres, round(metres - margin, 9), level.label_vi, level.label_en
                    )
                )
        where = f"ladder_by.ladders.{station_id}"
        ladders[station_id] = _built(where, partial(Ladder, tuple(steps), "above"))
    return ladders


def _threshold(rule: Mapping[str, Any], direction: Direction, ctx: _Ctx) -> ThresholdSpec:
    if ("ladder" in rule) == ("ladder_by" in rule):
        _fail("ladder", "give either 'ladder' or 'ladder_by' (one ladder per label value)")
    if "ladder" in rule:
        return ThresholdSpec(ladder=_steps(rule["ladder"], "ladder", direction))
    by = _mapping(rule["ladder_by"], "ladder_by")
    label = _string(by.get("label"), "ladder_by.label")
    if by.get("source") == "flood_levels":
        ladders = _flood_ladders(by, ctx.base_dir, ctx.flood_levels)
    elif "source" in by:
        _fail("ladder_by.source", f"unknown source {by['source']!r}; the known one: flood_levels")
    else:
        _unknown_keys(by, frozenset({"label", "ladders"}), "ladder_by")
        raw = _mapping(by.get("ladders"), "ladder_by.ladders")
        ladders = {str(k): _steps(v, f"ladder_by.ladders.{k}", direction) for k, v in raw.items()}
    return _built("ladder_by", lambda: ThresholdSpec(ladder_label=label, ladders=ladders))


def _leaf_or_group(value: object, field: str) -> Leaf | Group:
    item = _mapping(value, field)
    if set(item) in ({"any"}, {"all"}):
        mode: Literal["any", "all"] = "any" if "any" in item else "all"
        children = item[mode]
        if not isinstance(children, list) or not children:
            _fail(f"{field}.{mode}", "must be a non-empty list of conditions")
        parsed = tuple(_leaf_or_group(c, f"{field}.{mode}[{i}]") for i, c in enumerate(children))
        return Group(mode, parsed)
    _unknown_keys(item, frozenset({"metric", "op", "value"}), field)
    op = item.get("op")
    if op not in _OPS:
        _fail(f"{field}.op", f"unknown operator {op!r}; expected one of {list(_OPS)}")
    op_checked: CompareOp = op
    metric = _string(item.get("metric"), f"{field}.metric")
    return Leaf(metric, op_checked, _number(item.get("value"), f"{field}.value"))


def _spec(kind: RuleKind, rule: Mapping[str, Any], ctx: _Ctx) -> Spec:
    direction = rule.get("direction", "above")
    if direction not in ("above", "below"):
        _fail("direction", f"must be 'above' or 'below', got {direction!r}")
    if kind == "threshold":
        return _threshold(rule, direction, ctx)
    if kind == "rate_of_change":
        ladder = _steps(rule.get("ladder"), "ladder", direction)
        min_samples = rule.get("min_samples", 3)
        if isinstance(min_samples, bool) or not isinstance(min_samples, int):
            _fail("min_samples", f"must be an integer, got {min_samples!r}")
        return _built(
            "",
            lambda: RateSpec(
                ladder=ladder,
                window=_duration(rule, "window"),
                per=_duration(rule, "per", timedelta(hours=1)),
                scale=_number(rule.get("scale", 1.0), "scale"),
                min_samples=min_samples,
                unit=_string(rule.get("unit", ""), "unit"),
            ),
        )
    if kind == "sla":
        return SlaSpec(_steps(rule.get("ladder"), "ladder", "above", overdue=True))
    severity = _severity(rule.get("severity"), "severity")
    if kind == "flatline":
        return _built(
            "",
            lambda: FlatLineSpec(
                _duration(rule, "duration"),
                severity,
                _number(rule.get("tolerance", 0), "tolerance"),
            ),
        )
    if kind == "out_of_range":
        lo, hi = rule.get("min"), rule.get("max")
        return _built(
            "",
            lambda: RangeSpec(
                severity,
                None if lo is None else _number(lo, "min"),
                None if hi is None else _number(hi, "max"),
            ),
        )
    if kind == "absence":
        intervals = rule.get("intervals")
        if "intervals" in rule and "expected_interval" not in rule:
            _fail("expected_interval", "needed with 'intervals' (used when a device has none)")
        return _built(
            "",
            lambda: AbsenceSpec(
                severity,
                after=_opt_duration(rule, "after"),
                intervals=None if intervals is None else _number(intervals, "intervals"),
                expected_interval=_opt_duration(rule, "expected_interval"),
            ),
        )
    group = _leaf_or_group(rule.get("condition"), "condition")
    if isinstance(group, Leaf):
        group = Group("all", (group,))
    return _built(
        "",
        lambda: CompositeSpec(group, severity, _duration(rule, "max_age", timedelta(minutes=10))),
    )


def _annotations(value: object) -> dict[str, str]:
    raw = _mapping(value, "annotations")
    _unknown_keys(
        raw, frozenset({"summary", "description", "runbook_url", "dashboard_url"}), "annotations"
    )
    out: dict[str, str] = {}
    for key in ("summary", "description"):
        if key not in raw:
            if key == "summary":
                _fail("annotations.summary", "missing (give vi and en texts)")
            continue
        texts = _str_map(raw[key], f"annotations.{key}")
        _unknown_keys(texts, frozenset({"vi", "en"}), f"annotations.{key}")
        for lang in ("vi", "en"):
            if not texts.get(lang):
                _fail(
                    f"annotations.{key}.{lang}", "missing: every text is in Vietnamese and English"
                )
            out[f"{key}_{lang}"] = texts[lang]
    for key in ("runbook_url", "dashboard_url"):
        if key in raw:
            out[key] = _string(raw[key], f"annotations.{key}")
    for key, template in out.items():
        try:
            check_template(template)
        except TemplateError as exc:
            _fail(f"annotations.{key.replace('_vi', '.vi').replace('_en', '.en')}", str(exc))
    return out


def _matchers(value: object) -> tuple[Matcher, ...]:
    if isinstance(value, dict):
        return tuple(Matcher(str(k), "=", _string(v, f"matchers.{k}")) for k, v in value.items())
    if not isinstance(value, list):
        _fail("matchers", "must be a list like ['device_kind=\"air_quality\"'] or a mapping")
    out = []
    for i, text in enumerate(value):
        try:
            out.append(Matcher.parse(_string(text, f"matchers[{i}]")))
        except ValueError as exc:
            _fail(f"matchers[{i}]", str(exc))
    return tuple(out)


class _Ctx:
    def __init__(
        self, base_dir: Path, flood_levels: Mapping[str, Any] | None, vars_: dict[str, str]
    ):
        self.base_dir = base_dir
        self.flood_levels = flood_levels
        self.vars = vars_


def _rule(raw: Mapping[str, Any], ctx: _Ctx) -> Rule:
    name = _string(raw.get("name"), "name")
    if not _RULE_NAME.fullmatch(name):
        _fail("name", f"{name!r} must be lower case letters, digits, '_', '-' or '.'")
    kind = raw.get("type")
    if kind not in RULE_KINDS:
        _fail("type", f"unknown rule type {kind!r}; expected one of {list(RULE_KINDS)}")
    _unknown_keys(raw, _COMMON | _BY_KIND[kind], "")
    metrics: frozenset[str] | None
    if kind == "composite":
        if "metric" in raw:
            _fail("metric", "not used by composite rules (their conditions name the metrics)")
        metrics = None
    elif "metric" not in raw:
        if kind != "absence":
            _fail("metric", "missing (the metric or indicator this rule watches)")
        metrics = None
    else:
        value = raw["metric"]
        items = value if isinstance(value, list) else [value]
        metrics = frozenset(_string(m, "metric") for m in items)
    if kind in ("absence", "sla") and "nodata_after" in raw:
        _fail("nodata_after", f"not meaningful for {kind} rules")
    subject = _label_names(raw.get("subject"), "subject")
    carry = _label_names(raw.get("carry", []), "carry")
    labels = _str_map(raw.get("labels", {}), "labels")
    for key in labels:
        if (
            key in _RESERVED_LABELS
            or key in subject
            or key in carry
            or not LABEL_NAME.fullmatch(key)
        ):
            _fail(f"labels.{key}", "reserved, clashes with subject/carry, or not a label name")
    spec = _spec(kind, raw, ctx)
    if isinstance(spec, CompositeSpec):
        metrics = spec.condition.metrics()
    return _built(
        "",
        lambda: Rule(
            name=name,
            kind=kind,
            spec=spec,
            subject=subject,
            metrics=metrics,
            matchers=_matchers(raw.get("matchers", [])),
            carry=carry,
            labels=labels,
            annotations=_annotations(raw.get("annotations")),
            for_=_duration(raw, "for", timedelta(0)),
            keep_firing_for=_duration(raw, "keep_firing_for", timedelta(0)),
            nodata_after=_opt_duration(raw, "nodata_after"),
            repeat_every=_opt_duration(raw, "repeat_every"),
            template_vars=ctx.vars,
            description=_string(raw.get("description", ""), "description"),
        ),
    )


def parse_rules(
    document: object,
    *,
    source: str = "<rules>",
    base_dir: Path | None = None,
    flood_levels: Mapping[str, Any] | None = None,
) -> RuleSet:
    """Validate a parsed YAML document into a :class:`RuleSet`; :class:`RuleConfigError` if not.

    ``base_dir`` resolves relative paths in the document (default: current directory);
    ``flood_levels`` (station id → ``GaugeThresholds``) replaces reading the flood level file.
    """
    if not isinstance(document, dict):
        raise RuleConfigError(source, ["expected a mapping with 'version' and 'rules'"])
    problems: list[str] = []
    unknown = sorted(str(k) for k in document if k not in ("version", "vars", "rules"))
    if unknown:
        problems.append(f"{source}: unknown top-level key(s) {unknown}")
    if document.get("version") != 1:
        problems.append(f"{source}: unsupported version {document.get('version')!r} (expected 1)")
    vars_: dict[str, str] = {}
    try:
        vars_ = _str_map(document.get("vars", {}), "vars")
    except _Problem as exc:
        problems.append(f"{source}: field '{exc.field}': {exc.message}")
    entries = document.get("rules")
    if not isinstance(entries, list) or not entries:
        problems.append(f"{source}: 'rules' must be a non-empty list")
        entries = []
    ctx = _Ctx(base_dir or Path.cwd(), flood_levels, vars_)
    rules: list[Rule] = []
    seen: set[str] = set()
    for i, raw in enumerate(entries):
        name = raw.get("name") if isinstance(raw, dict) else None
        where = f"{source}: rule {name!r} (rules[{i}])"
        if isinstance(name, str) and name in seen:
            problems.append(f"{where}, field 'name': duplicate rule name {name!r}")
        if isinstance(name, str):
            seen.add(name)
        try:
            rules.append(_rule(_mapping(raw, "rule"), ctx))
        except _Problem as exc:
            problems.append(f"{where}, field '{exc.field}': {exc.message}")
    if problems:
        raise RuleConfigError(source, problems)
    return RuleSet(tuple(rules), source)


def load_rules(
    path: Path | str = DEFAULT_RULES_PATH, *, flood_levels: Mapping[str, Any] | None = None
) -> RuleSet:
    """Read and validate a rule file; :class:`RuleConfigError` on any problem (all listed)."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise RuleConfigError(str(file), [f"cannot read the rule file: {exc}"]) from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RuleConfigError(str(file), [f"not valid YAML: {exc}"]) from None
    return parse_rules(document, source=str(file), base_dir=file.parent, flood_levels=flood_levels)
