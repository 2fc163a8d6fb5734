-- Canonical city-system events (CloudEvents on ioc.events): documents, public-service
-- applications, citizen feedback. `data` is the event's JSON data as text (read fields with
-- JSONExtract*); agency, district and ward are copied out for filtering. (source, id) is
-- unique per event, so a redelivered event collapses (ReplacingMergeTree).
-- TTL {{events_ttl_days}} days (IOC_RETENTION_EVENTS_DAYS, default 730).
CREATE TABLE IF NOT EXISTS events (
    type LowCardinality(String),
    agency LowCardinality(String),
    time DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)),
    source LowCardinality(String),
    id String,
    subject String,
    district LowCardinality(String),
    ward LowCardinality(String),
    received_at DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)),
    dataschema LowCardinality(String),
    origin String CODEC(ZSTD(1)),
    data String CODEC(ZSTD(3)),
    kafka_topic LowCardinality(String),
    kafka_partition UInt16,
    kafka_offset UInt64
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(time)
ORDER BY (type, agency, time, source, id)
TTL toDateTime(time) + INTERVAL {{events_ttl_days}} DAY
SETTINGS non_replicated_deduplication_window = 10000;
