-- Rejected input kept whole, with its machine-readable reason.
CREATE TABLE IF NOT EXISTS dead_letters (
    received_at DateTime64(3, 'UTC'),
    reason LowCardinality(String),
    detail String,
    source String,
    source_id String,
    payload String CODEC(ZSTD(3)),
    kafka_topic LowCardinality(String),
    kafka_partition UInt16,
    kafka_offset UInt64
) ENGINE = MergeTree
PARTITION BY toYYYYMM(received_at)
ORDER BY (reason, received_at)
TTL toDateTime(received_at) + INTERVAL 30 DAY
SETTINGS non_replicated_deduplication_window = 10000;
