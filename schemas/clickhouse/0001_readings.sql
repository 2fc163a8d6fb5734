-- Raw sensor readings, one row per reading, ordered for per-device time-series reads.
-- kafka_topic/partition/offset record where each row came from: the sink uses them to resume
-- exactly after the last inserted message, so a replay never doubles a row.
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
    kafka_offset UInt64 CODEC(DoubleDelta, ZSTD(1))
) ENGINE = MergeTree
PARTITION BY toYYYYMM(event_time)
ORDER BY (device_id, metric, event_time)
TTL toDateTime(event_time) + INTERVAL 90 DAY
SETTINGS non_replicated_deduplication_window = 10000;
