"""The dispatcher's policies with fixed timestamps: grouping, repeat, resolved, silences,
inhibition, mute windows, rate limits, escalation, and restore from the notification log."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from connectors.notify.config import RateLimit, parse_config
from connectors.notify.dispatch import Delivered, Dispatcher, Notification
from connectors.notify.silences import Silence, decode_silence, encode_silence
from schemas.alerts import AlertState

T0 = datetime(2026, 11, 28, 2, 0, tzinfo=UTC)  # 09:00 in Long Xuyên


def _config(**extra: Any) -> Any:
    route = {
        "receiver": "ops",
        "group_by": ["district"],
        "group_wait": "30s",
        "group_interval": "5m",
        "repeat_interval": "1h",
        "routes": [
            {
                "matchers": ['team="flood"'],
                "receiver": "flood",
                "group_by": ["station"],
                "escalate": {"after": "30m", "receiver": "duty"},
            },
        ],
        **extra.pop("route", {}),
    }
    receivers = [
        {"name": "ops", "type": "webhook", "url": "http://127.0.0.1:1/ops"},
        {"name": "flood", "type": "webhook", "url": "http://127.0.0.1:1/flood"},
        {"name": "duty", "type": "webhook", "url": "http://127.0.0.1:1/duty"},
        {"name": "quiet", "type": "webhook", "url": "http://127.0.0.1:1/q", "send_resolved": False},
    ]
    return parse_config({"version": 1, "receivers": receivers, "route": route, **extra})


def _alert(
    fp: str,
    *,
    district: str = "lx",
    state: str = "firing",
    severity: str = "minor",
    revision: int = 2,
    at: datetime = T0,
    **labels: str,
) -> AlertState:
    return AlertState(
        fingerprint=fp,
        rule="r",
        labels={"alertname": "r", "district": district, **labels},
        state=state,
        severity=severity,
        episode=1,
        revision=revision,  # type: ignore[arg-type]
        fired_at=at,
        active_since=at,
        resolved_at=at if state == "resolved" else None,
    )


def _at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def _kinds(ns: list[Notification]) -> list[tuple[str, str, str, int, int]]:
    return [(n.receiver, n.kind, n.status, len(n.firing), len(n.resolved)) for n in ns]


def test_one_notification_per_group_after_group_wait_then_changes_after_group_interval() -> None:
    d = Dispatcher(_config())
    d.observe(_alert("a"), T0)
    d.observe(_alert("b", revision=3), _at(5))
    d.observe(_alert("c", district="cd"), _at(5))
    assert d.due(_at(29)) == []
    first = d.due(_at(30))
    assert _kinds(first) == [("ops", "notify", "firing", 2, 0)]
    assert _kinds(d.due(_at(35))) == [("ops", "notify", "firing", 1, 0)]  # district cd
    # the value oscillates: state changes but nothing the group says changes
    d.observe(replace(_alert("a"), revision=7, value=101.0), _at(60))
    assert d.due(_at(100)) == []
    d.observe(_alert("a", severity="major", revision=8), _at(100))  # escalation in place
    assert d.due(_at(329)) == []  # group_interval (5m) since the last notification
    [changed] = d.due(_at(330))
    assert _kinds([changed]) == [("ops", "notify", "firing", 2, 0)]
    assert changed.seq == 1
    assert changed.idempotency_key != first[0].idempotency_key
    d.observe(_alert("a", severity="major", revision=3), _at(340))  # an older revision
    assert d.alerts["a"].revision == 8


def test_repeat_until_acknowledged_and_resolved_notification() -> None:
    d = Dispatcher(_config())
    d.observe(_alert("a"), T0)
    assert _kinds(d.due(_at(30))) == [("ops", "notify", "firing", 1, 0)]
    assert d.due(_at(30 + 3599)) == []
    assert _kinds(d.due(_at(30 + 3600))) == [("ops", "repeat", "firing", 1, 0)]
    d.observe(replace(_alert("a", revision=5), acknowledged_by="an"), _at(3700))
    assert d.due(_at(30 + 3600 * 3)) == []  # acknowledged: no more repeats
    d.observe(_alert("a", state="resolved", revision=6), _at(20000))
    resolved = d.due(_at(20001))
    assert _kinds(resolved) == [("ops", "notify", "resolved", 0, 1)]
    assert d.groups == {}
    assert d.due(_at(30000)) == []


def test_receiver_without_send_resolved_is_not_told() -> None:
    d = Dispatcher(_config(route={"receiver": "quiet"}))
    d.observe(_alert("a"), T0)
    assert len(d.due(_at(30))) == 1
    d.observe(_alert("a", state="resolved", revision=3), _at(60))
    assert d.due(_at(1000)) == []
    assert d.groups == {}


def test_pending_that_resolves_before_group_wait_sends_nothing() -> None:
    d = Dispatcher(_config())
    d.observe(_alert("a"), T0)
    d.observe(_alert("a", state="resolved", revision=3), _at(10))
    assert d.due(_at(40)) == []
    assert d.groups == {}


def test_silence_mutes_and_its_end_notifies() -> None:
    d = Dispatcher(_config())
    silence = Silence.new(['district="lx"'], T0, _at(600), "an", "maintenance")
    d.silences.put(decode_silence(encode_silence(silence)))
    d.observe(_alert("a"), T0)
    assert d.due(_at(30)) == []
    assert d.due(_at(599)) == []
    assert _kinds(d.due(_at(600))) == [("ops", "notify", "firing", 1, 0)]
    # the alert's own silence (an operator's silence action) mutes too
    d2 = Dispatcher(_config())
    d2.observe(replace(_alert("a"), silenced_until=_at(100)), T0)
    assert d2.due(_at(30)) == []
    assert len(d2.due(_at(100))) == 1


def test_inhibition_mutes_targets_with_equal_labels() -> None:
    d = Dispatcher(
        _config(
            inhibit_rules=[
                {
                    "source_matchers": ['alertname="flood"'],
                    "target_matchers": ['alertname="gauge"'],
                    "equal": ["station"],
                }
            ]
        )
    )
    src = AlertState(
        "s",
        "flood",
        {"alertname": "flood", "station": "s1", "district": "lx"},
        "firing",
        "major",
        episode=1,
        revision=1,
        fired_at=T0,
    )
    target = AlertState(
        "t1",
        "gauge",
        {"alertname": "gauge", "station": "s1", "district": "lx"},
        "firing",
        "warning",
        episode=1,
        revision=1,
        fired_at=T0,
    )
    other = replace(target, fingerprint="t2", labels={**target.labels, "station": "s2"})
    for s in (src, target, other):
        d.observe(s, T0)
    [n] = d.due(_at(30))
    assert sorted(s.fingerprint for s in n.firing) == ["s", "t2"]


def test_mute_window_holds_notifications_until_it_ends() -> None:
    d = Dispatcher(
        _config(
            route={"mute_time_intervals": ["night"]},
            time_intervals=[{"name": "night", "times": [{"start": "08:00", "end": "10:00"}]}],
        )
    )
    d.observe(_alert("a"), T0)  # 09:00 local
    assert d.due(_at(30)) == []
    assert d.due(_at(3599)) == []
    assert len(d.due(_at(3600))) == 1  # 10:00 local


def test_rate_limit_defers_instead_of_dropping() -> None:
    config = _config(route={"group_by": ["..."]})
    ops = replace(config.receivers["ops"], rate_limit=RateLimit(2, timedelta(minutes=1)))
    d = Dispatcher(replace(config, receivers={**config.receivers, "ops": ops}))
    for fp in "abc":
        d.observe(_alert(fp, device=fp), T0)
    assert len(d.due(_at(30))) == 2
    assert d.deferred == 1
    assert d.due(_at(31)) == []
    assert len(d.due(_at(60))) == 1  # half a minute gives one token back


def test_escalation_once_if_unacknowledged() -> None:
    d = Dispatcher(_config())
    d.observe(_alert("f", team="flood", station="s1"), T0)
    assert _kinds(d.due(_at(30))) == [("flood", "notify", "firing", 1, 0)]
    assert _kinds(d.due(_at(1800))) == [("duty", "escalation", "firing", 1, 0)]
    assert d.due(_at(1900)) == []
    acked = Dispatcher(_config())
    acked.observe(replace(_alert("f", team="flood", station="s1"), acknowledged_by="an"), T0)
    assert _kinds(acked.due(_at(4000))) == [("flood", "notify", "firing", 1, 0)]


def test_restore_from_the_log_prevents_a_second_notification() -> None:
    first = Dispatcher(_config())
    first.observe(_alert("a"), T0)
    [sent] = first.due(_at(30))
    log = Delivered.from_dict(Delivered.of(sent).to_dict())
    again = Dispatcher(_config())
    again.restore(log)
    again.observe(_alert("a"), _at(100))
    assert again.due(_at(200)) == []
    assert _kinds(again.due(_at(30 + 3600))) == [("ops", "repeat", "firing", 1, 0)]
    # not delivered before a crash: decided again with the same idempotency key
    lost = Dispatcher(_config())
    lost.observe(_alert("a"), T0)
    [retry] = lost.due(_at(30))
    assert retry.idempotency_key == sent.idempotency_key


def test_instances_deliver_only_owned_groups_and_a_new_owner_continues_from_the_log() -> None:
    from connectors.notify.ownership import group_partition

    one, two = Dispatcher(_config()), Dispatcher(_config())
    districts = [f"d{i}" for i in range(8)]
    for d in (one, two):
        for i, district in enumerate(districts):
            d.observe(_alert(f"a{i}", district=district), T0)

    def owner(part: int) -> Any:
        return lambda gid: group_partition(gid, 2) == part

    sent_one = one.due(_at(31), owner(0))
    sent_two = two.due(_at(31), owner(1))
    groups = sorted(dict(n.group_key)["district"] for n in sent_one + sent_two)
    assert groups == districts  # every group by exactly one instance
    assert sent_one
    assert sent_two
    # both learn each other's deliveries from the notification log
    for n in sent_one:
        two.restore(Delivered.of(n))
    # instance one is gone: two owns everything; one group of one's changes
    changed = dict(sent_one[0].group_key)["district"]
    two.observe(_alert("late", district=changed), _at(40))
    again = two.due(_at(31 + 301), lambda gid: True)
    assert [(dict(n.group_key)["district"], len(n.firing)) for n in again] == [(changed, 2)]
    assert again[0].seq == sent_one[0].seq + 1  # continues the group's sequence
