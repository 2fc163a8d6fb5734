-- Every notification delivery attempt (ioc.notifications/v1 from the notifier): receiver,
-- attempt number, outcome (delivered, failed, gave_up), HTTP status, error and duration.
-- TTL {{notifications_ttl_days}} days (IOC_RETENTION_NOTIFICATIONS_DAYS, default 365).
CREATE TABLE IF NOT EXISTS notification_attempts (
    at DateTime64(6, 'UTC') CODEC(Delta, ZSTD(1)),
    idempotency_key String,
    receiver LowCardinality(String),
    receiver_type LowCardinality(String),
    route LowCardinality(String),
    kind LowCardinality(String),
    status LowCardinality(String),
    attempt UInt16,
    outcome LowCardinality(String),
    http_status Nullable(UInt16),
    error String CODEC(ZSTD(1)),
    duration_ms Float64,
    alert_ids Array(String),
    fingerprints Array(String),
    group_key Map(String, String),
    kafka_topic LowCardinality(String),
    kafka_partition UInt16,
    kafka_offset UInt64
) ENGINE = MergeTree
PARTITION BY toYYYYMM(at)
ORDER BY (receiver, at)
TTL toDateTime(at) + INTERVAL {{notifications_ttl_days}} DAY
SETTINGS non_replicated_deduplication_window = 10000;
