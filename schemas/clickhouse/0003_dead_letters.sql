-- Rejected input kept whole, with its machine-readable reason: from ioc.deadletter and the
-- sink's own poison rows (reason poison_row, source "kafka:<topic>", source_id
-- "<partition>:<offset>"). TTL {{dead_letters_ttl_days}} days (IOC_RETENTION_DEAD_LETTERS_DAYS,
-- default 30).
CREATE TABLE IF NOT EXISTS dead_letters (
    received_at DateTime64(3, 'UTC') CODEC(DoubleDelta, ZSTD(1)),
    reason LowCardinality(String),
    detail String CODEC(ZSTD(1)),
    source String CODEC(ZSTD(1)),
    source_id String CODEC(ZSTD(1)),
    payload String CODEC(ZSTD(3)),
    kafka_topic LowCardinality(String),
    kafka_partition UInt16,
    kafka_offset UInt64
) ENGINE = MergeTree
PARTITION BY toYYYYMM(received_at)
ORDER BY (reason, received_at)
TTL toDateTime(received_at) + INTERVAL {{dead_letters_ttl_days}} DAY
SETTINGS non_replicated_deduplication_window = 10000;
