"""Alerting core of iocstream: rules, evaluators and the alert lifecycle, all pure.

No Faust, Kafka or network here (the only I/O is reading the YAML rule file), so everything is
unit-tested with fixed timestamps. The stream worker wires it up:

1. at start, :func:`load_rules` (``deploy/alerts/rules.yaml``); a bad file stops the worker
   with :class:`RuleConfigError` listing every problem;
2. per observation (reading, indicator, service item), for each rule in
   ``rules.selecting(obs)``: key = the alert fingerprint (:func:`new_state` gives it),
   ``state, events = observe(table.get(key), rule, obs, now)``, store ``encode_state(state)``,
   publish ``encode_event(e)`` on ``ioc.alerts`` (key: fingerprint) for each event;
3. every few seconds, for every stored state: ``tick(state, rule, now)``;
4. per operator action on ``ioc.alert-actions``: ``apply_action(state, action)``;
   :class:`ActionRejected` is a bad action, not a crash.

Modules: :mod:`~streams.alerts.durations`, :mod:`~streams.alerts.matchers`,
:mod:`~streams.alerts.templates`, :mod:`~streams.alerts.rules` (rule model),
:mod:`~streams.alerts.loader` (YAML), :mod:`~streams.alerts.model` (observations,
fingerprints), :mod:`~streams.alerts.evaluate`, :mod:`~streams.alerts.machine` (lifecycle and
its policies), :mod:`~streams.alerts.actions`. Wire formats: :mod:`schemas.alerts`.
"""

from streams.alerts.actions import ActionRejected, apply_action
from streams.alerts.evaluate import Condition, Evaluation, evaluate_observation, evaluate_tick
from streams.alerts.loader import DEFAULT_RULES_PATH, RuleConfigError, load_rules, parse_rules
from streams.alerts.machine import can_forget, new_state, observe, step, tick
from streams.alerts.model import (
    TICK,
    AlertAction,
    AlertEvent,
    AlertState,
    Observation,
    Tick,
    fingerprint,
)
from streams.alerts.rules import Rule, RuleSet

__all__ = [
    "DEFAULT_RULES_PATH",
    "TICK",
    "ActionRejected",
    "AlertAction",
    "AlertEvent",
    "AlertState",
    "Condition",
    "Evaluation",
    "Observation",
    "Rule",
    "RuleConfigError",
    "RuleSet",
    "Tick",
    "apply_action",
    "can_forget",
    "evaluate_observation",
    "evaluate_tick",
    "fingerprint",
    "load_rules",
    "new_state",
    "observe",
    "parse_rules",
    "step",
    "tick",
]
