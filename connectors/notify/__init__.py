"""``iocstream notifier``: on-call notifications from ``ioc.alerts``, to the right person, once.

Pure core (unit-tested with fixed timestamps, no I/O):

* :mod:`~connectors.notify.labels` — matchers, durations, the labels notifications match on;
* :mod:`~connectors.notify.config` — ``deploy/alerts/routes.yaml``: receivers, the routing tree
  with ``continue``, time intervals, inhibit rules; validated with every problem listed;
* :mod:`~connectors.notify.schedule` — recurring mute windows in local time;
* :mod:`~connectors.notify.limits` — inhibition and per-receiver token buckets;
* :mod:`~connectors.notify.silences` — matcher silences and their wire format;
* :mod:`~connectors.notify.dispatch` — grouping, group_wait/group_interval/repeat_interval,
  resolved notifications, escalation, idempotency keys, restore from the notification log;
* :mod:`~connectors.notify.payloads` — Alertmanager webhook, Telegram, e-mail, PagerDuty v2.

I/O: :mod:`~connectors.notify.senders` (one delivery attempt per call, secrets from the
environment), :mod:`~connectors.notify.service` (Kafka in, deliveries with retries and backoff,
the attempt log ``ioc.notifications``), :mod:`~connectors.notify.cli` (``iocstream notifier``
and ``iocstream silence``).

Delivery is at-least-once: every notification carries an idempotency key (HTTP header
``Idempotency-Key``, body ``idempotencyKey``, e-mail ``Message-ID``, PagerDuty ``dedup_key`` per
alert) that stays the same when the same notification is sent again after a crash.
"""
