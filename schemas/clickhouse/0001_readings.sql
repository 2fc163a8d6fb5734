-- Raw sensor readings, one row per reading, ordered for per-device time-series reads.
-- Codecs: DoubleDelta on times (monotonic per device and metric in the sort order), Gorilla on
-- values (slowly varying floats), ZSTD behind both; LowCardinality for ids and names.
-- kafka_topic/partition/offset record where each row came from (audit; replays are dropped by
-- the sink's ledger and insert_deduplication_token, see connectors/clickhouse/sink.py).
-- TTL: {{readings_ttl_days}} days (IOC_RETENTION_READINGS_DAYS, default 90; change an existing
-- table with `iocstream db ttl`). non_replicated_deduplication_window keeps the tokens of the
-- last 10,000 inserts so that a retried insert is dropped.
CREATE TABLE IF NOT EXISTS readings (
    device_id LowCardinality(String),
    device_kind LowCardinality(String),
    district LowCardinality(String),
    ward LowCardinality(String),
    metric LowCardinality(String),
    value Float64 CODEC(Gorilla, ZSTD(1)),
    unit LowCardinality(String),
    event_time DateTime64(3, 'UTC') CODEC(DoubleDelta, ZSTD(1)),
    receive_time DateTime64(3, 'UTC') CODEC(DoubleDelta, ZSTD(1)),
    time_source Enum8('device' = 1, 'receive' = 2),
    source String CODEC(ZSTD(1)),
    kafka_topic LowCardinality(String),
    kafka_partition UInt16,
    kafka_offset UInt64 CODEC(Delta, ZSTD(1))
) ENGINE = MergeTree
PARTITION BY toYYYYMM(event_time)
ORDER BY (device_id, metric, event_time)
TTL toDateTime(event_time) + INTERVAL {{readings_ttl_days}} DAY
SETTINGS non_replicated_deduplication_window = 10000, ttl_only_drop_parts = 1;
