-- Alert history: every state change of ioc.alerts (ioc.alerts/v1), one row per
-- (fingerprint, revision); a redelivered event has the same key and collapses
-- (ReplacingMergeTree). The full state snapshot is kept as JSON in `state_json`.
-- TTL {{alerts_ttl_days}} days (IOC_RETENTION_ALERTS_DAYS, default 730).
CREATE TABLE IF NOT EXISTS alert_events (
    fingerprint String,
    revision UInt32,
    rule LowCardinality(String),
    alert_id String,
    kind LowCardinality(String),
    at DateTime64(6, 'UTC') CODEC(Delta, ZSTD(1)),
    actor LowCardinality(String),
    notify Bool,
    from_state LowCardinality(String),
    to_state LowCardinality(String),
    from_severity LowCardinality(String),
    to_severity LowCardinality(String),
    detail String CODEC(ZSTD(1)),
    comment String CODEC(ZSTD(1)),
    state LowCardinality(String),
    severity LowCardinality(String),
    value Nullable(Float64),
    labels Map(String, String),
    annotations Map(String, String),
    episode UInt32,
    fired_at Nullable(DateTime64(6, 'UTC')),
    resolved_at Nullable(DateTime64(6, 'UTC')),
    acknowledged_by String,
    acknowledged_at Nullable(DateTime64(6, 'UTC')),
    assignee String,
    silenced_until Nullable(DateTime64(6, 'UTC')),
    state_json String CODEC(ZSTD(3)),
    kafka_topic LowCardinality(String),
    kafka_partition UInt16,
    kafka_offset UInt64
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(at)
ORDER BY (fingerprint, revision)
TTL toDateTime(at) + INTERVAL {{alerts_ttl_days}} DAY
SETTINGS non_replicated_deduplication_window = 10000;

-- Latest state per fingerprint: the row with the highest revision wins (read with FINAL).
CREATE TABLE IF NOT EXISTS alerts_latest (
    fingerprint String,
    revision UInt32,
    rule LowCardinality(String),
    alert_id String,
    last_kind LowCardinality(String),
    updated_at DateTime64(6, 'UTC'),
    state LowCardinality(String),
    severity LowCardinality(String),
    value Nullable(Float64),
    labels Map(String, String),
    annotations Map(String, String),
    episode UInt32,
    fired_at Nullable(DateTime64(6, 'UTC')),
    resolved_at Nullable(DateTime64(6, 'UTC')),
    acknowledged_by String,
    acknowledged_at Nullable(DateTime64(6, 'UTC')),
    assignee String,
    silenced_until Nullable(DateTime64(6, 'UTC'))
) ENGINE = ReplacingMergeTree(revision)
ORDER BY fingerprint
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS alerts_latest_mv TO alerts_latest AS
SELECT
    fingerprint,
    revision,
    rule,
    alert_id,
    kind AS last_kind,
    at AS updated_at,
    state,
    severity,
    value,
    labels,
    annotations,
    episode,
    fired_at,
    resolved_at,
    acknowledged_by,
    acknowledged_at,
    assignee,
    silenced_until
FROM alert_events;
