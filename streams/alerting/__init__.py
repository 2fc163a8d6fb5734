"""``iocstream alerter``: the Faust app that runs the pure alert core on the live streams.

Its own app id and consumer group (``iocstream-alerter``), separate from the stream worker, so
alert evaluation scales, restarts and lags independently of the window computation.

Partitioning: why two stages
----------------------------

Readings are partitioned by device, indicators by indicator key, actions by fingerprint, and
one alert may be fed by many devices (``district_silent`` by every device of a district). An
alert's state must be owned by exactly one task and see its inputs in one order, so the
alerter re-keys everything by **fingerprint** onto one internal topic
(``<app id>-alert-inputs``, ``IOC_ALERTER_PARTITIONS`` partitions, default
``IOC_TOPIC_PARTITIONS``):

1. *Forwarders* (stateless) turn each reading batch / indicator into observations, pick the
   rules that select them, group them per (rule, fingerprint) with ``now`` (the forwarder's
   clock) and send one ``pack`` per internal partition (Kafka's default partitioner on the
   fingerprint), so a batch of 500 devices is a handful of records; operator actions are
   forwarded as they are, keyed by fingerprint (the same partition). Actions go through
   the same topic rather than being read directly so that, per fingerprint, observations,
   actions and ticks form a single total order.
2. The *evaluator* consumes the internal topic; the state table (``alert-state``, keyed by
   fingerprint, changelog ``<app id>-alert-state-changelog``) is partitioned exactly like it.
3. A *timer* sends a ``tick`` to each internal partition the worker owns, every
   ``IOC_ALERTER_TICK_INTERVAL_S``: clock-driven changes (absence, SLA, keep-firing expiry,
   no-data, reminders, silence expiry) happen when the evaluator reads the tick. The tick's
   time is the local clock, held back while the forwarders still have a backlog (after a
   restart or an outage), so a backlog never makes devices look silent
   (:mod:`~streams.alerting.clock`, ``IOC_ALERTER_TICK_HOLD_S``).

Because time enters only through messages (observation event times, the ``now`` of ``obs`` and
``tick`` messages, the ``at`` of actions), the evaluator is deterministic: replaying the
internal topic gives the same states and the same events.

Restart: no duplicate firing, no lost timer
-------------------------------------------

* For each internal message the evaluator publishes its events on ``ioc.alerts`` and waits for
  Kafka's acknowledgement, then updates each changed state record (state + offset of the input
  applied). The records go to the changelog in rounds (every 1 s, after 1,000 inputs and at
  every rebalance), the latest record of each fingerprint once per round, and the messages
  of a round are acknowledged once its records are durable. Faust commits an offset only
  when every earlier message is acknowledged, so no committed input lacks its state.
* After a crash (SIGKILL included) the table is restored from the changelog and consumption
  resumes at the committed offset. A message whose state record is durable is skipped for that
  fingerprint (record offset ≥ message offset); one whose record is not is re-applied to the
  previous state and, being deterministic, produces the *same* events with the same
  ``(fingerprint, revision)`` — at worst a duplicate message on ``ioc.alerts`` that consumers
  drop by ``event_id``, never a second alert (new episode) or a different one.
* Pending (``for``), keep-firing, no-data and reminder timers are fields of the stored state,
  and the first tick after a restart evaluates them against the clock, so none is lost; a tick
  whose ``now`` is not after the partition's previous tick is ignored.
* Forwarders acknowledge an input message once its internal messages are durable
  (at-least-once); a re-forwarded observation is harmless because the machine ignores
  observations older than the last one evaluated and replaying the last one changes nothing.
* The faust-streaming 0.15.3 "lost queue after recovery" race is guarded as in the stream
  worker (flow control suspended until recovery has finished) and a gap in an internal
  partition's offsets stops the alerter rather than skipping input.

Modules: :mod:`~streams.alerting.inputs` (pure: observations, internal messages),
:mod:`~streams.alerting.partition` (pure: replay-safe states of one partition),
:mod:`~streams.alerting.clock` (pure: the time a tick may claim),
:mod:`~streams.alerting.lag` (pure: consumer lag per topic, reported every 5 s as
``iocstream_consumer_lag_records{component="alerter"}`` for the input and internal topics),
:mod:`~streams.alerting.agents` (Faust wiring), :mod:`~streams.alerting.cli` (the command).
"""
