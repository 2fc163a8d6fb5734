"""Every Prometheus metric of the platform, defined in one place.

Names follow Prometheus conventions with the ``iocstream_`` prefix; labels are
low-cardinality (component, table, reason, side — never a device id). Each process builds
one :class:`Metrics` on the default registry and serves it with :func:`serve`; tests pass a
fresh ``CollectorRegistry``.
"""

from __future__ import annotations

import logging
import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.registry import REGISTRY

log = logging.getLogger(__name__)

_LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_SIZES = (1, 5, 10, 50, 100, 250, 500, 1000, 5000, 10_000, 50_000, 100_000)


class Metrics:
    """The platform's metrics on one registry."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        r = registry
        p = "iocstream_"
        # bridge
        self.bridge_messages = Counter(
            p + "bridge_messages_total", "MQTT messages received by the bridge", registry=r
        )
        self.bridge_readings = Counter(
            p + "bridge_readings_total", "readings produced to Kafka by the bridge", registry=r
        )
        self.bridge_produce_latency = Histogram(
            p + "bridge_produce_latency_seconds",
            "time from send to Kafka acknowledgement",
            buckets=_LATENCY,
            registry=r,
        )
        self.bridge_batch_size = Histogram(
            p + "bridge_batch_readings", "readings per Kafka message", buckets=_SIZES, registry=r
        )
        self.bridge_reconnects = Counter(
            p + "bridge_reconnects_total", "reconnections", ["side"], registry=r
        )
        self.bridge_inflight = Gauge(
            p + "bridge_unacknowledged_messages",
            "MQTT messages received but not yet acknowledged",
            registry=r,
        )
        self.bridge_connected = Gauge(
            p + "bridge_mqtt_connected", "1 while the bridge is connected to MQTT", registry=r
        )
        self.bridge_status_events = Counter(
            p + "bridge_status_events_total",
            "device status changes published to ioc.events",
            ["status"],
            registry=r,
        )
        self.bridge_quarantined = Counter(
            p + "bridge_quarantined_readings_total",
            "readings of unknown devices sent to the quarantine topic",
            registry=r,
        )
        self.bridge_produce_errors = Counter(
            p + "bridge_produce_errors_total",
            "Kafka sends that failed and were scheduled again",
            registry=r,
        )
        # dead letters, from every component
        self.dead_letters = Counter(
            p + "dead_letters_total",
            "inputs sent to the dead-letter topic",
            ["component", "reason"],
            registry=r,
        )
        # sink
        self.sink_rows = Counter(
            p + "sink_rows_total", "rows written to ClickHouse", ["table"], registry=r
        )
        self.sink_bytes = Counter(
            p + "sink_message_bytes_total",
            "Kafka message bytes written to ClickHouse",
            ["table"],
            registry=r,
        )
        self.sink_batch_rows = Histogram(
            p + "sink_batch_rows", "rows per insert", buckets=_SIZES, registry=r
        )
        self.sink_insert_latency = Histogram(
            p + "sink_insert_seconds",
            "duration of successful inserts",
            buckets=_LATENCY,
            registry=r,
        )
        self.sink_retries = Counter(
            p + "sink_insert_retries_total", "failed insert attempts", ["table"], registry=r
        )
        self.sink_paused = Gauge(p + "sink_paused", "1 while consumption is paused", registry=r)
        self.sink_pauses = Counter(
            p + "sink_pauses_total",
            "times the sink paused consumption because ClickHouse inserts failed",
            registry=r,
        )
        self.sink_batch_bytes = Histogram(
            p + "sink_batch_message_bytes",
            "Kafka message bytes per insert",
            buckets=(1e3, 1e4, 1e5, 1e6, 4e6, 16e6, 64e6),
            registry=r,
        )
        # worker
        self.worker_readings = Counter(
            p + "worker_readings_total", "readings aggregated by the worker", registry=r
        )
        self.worker_windows_closed = Counter(
            p + "worker_windows_closed_total", "windows closed and emitted", registry=r
        )
        self.worker_late = Counter(
            p + "worker_late_readings_total", "readings after their window closed", registry=r
        )
        # alerter and notifier
        self.alert_events = Counter(
            p + "alert_events_total",
            "alert state changes published to ioc.alerts",
            ["kind"],
            registry=r,
        )
        self.notification_attempts = Counter(
            p + "notification_attempts_total",
            "notification delivery attempts",
            ["receiver_type", "outcome"],
            registry=r,
        )
        # every Kafka consumer of the platform (sink, worker, alerter, notifier, web)
        self.consumer_lag = Gauge(
            p + "consumer_lag_records",
            "records between a consumer's position and the partition's end, summed per topic",
            ["component", "topic"],
            registry=r,
        )
        # readings per district (about a dozen districts: low cardinality by design)
        self.district_readings = Counter(
            p + "district_readings_total",
            "readings accepted per district (pre-set to 0 for every registered district)",
            ["district"],
            registry=r,
        )
        # web (live alert feed)
        self.web_alert_events = Counter(
            p + "web_alert_events_total",
            "alert events read by the web feed, by outcome (applied, duplicate, invalid)",
            ["outcome"],
            registry=r,
        )
        self.web_sse_clients = Gauge(
            p + "web_sse_clients", "browsers connected to the live alert stream", registry=r
        )
        self.web_actions = Counter(
            p + "web_actions_total",
            "operator actions sent from the web page, by action and outcome (sent, rejected, "
            "failed)",
            ["action", "outcome"],
            registry=r,
        )
        self.web_silences = Counter(
            p + "web_silences_total",
            "silences created or expired through the web API, by operation (create, expire) "
            "and outcome (sent, rejected, failed)",
            ["operation", "outcome"],
            registry=r,
        )
        self.web_tile_errors = Counter(
            p + "web_tile_query_errors_total",
            "indicator tile queries that failed (a missing table counts as empty, not here)",
            ["tile"],
            registry=r,
        )
        self.web_login_failures = Counter(
            p + "web_login_failures_total", "requests refused for a wrong token", registry=r
        )


def serve(port: int, registry: CollectorRegistry = REGISTRY) -> None:
    """Serve ``/metrics`` on ``IOC_METRICS_HOST:port`` (port 0: not at all).

    The address defaults to loopback; containers set ``IOC_METRICS_HOST=0.0.0.0`` so that
    Prometheus and Kubernetes probes can reach it.
    """
    if port:
        host = os.environ.get("IOC_METRICS_HOST", "127.0.0.1")
        start_http_server(port, addr=host, registry=registry)
        log.info("metrics on http://%s:%d/metrics", host, port)
