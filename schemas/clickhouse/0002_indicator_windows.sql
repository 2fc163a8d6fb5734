-- Closed 1-minute window statistics per device and metric (ioc.indicators/v1). A late update
-- of a window carries a higher revision and replaces the earlier row (ReplacingMergeTree):
-- read with FINAL (or argMax by revision). TTL {{windows_ttl_days}} days
-- (IOC_RETENTION_WINDOWS_DAYS, default 400); roll-ups (0005) keep longer.
CREATE TABLE IF NOT EXISTS indicator_windows (
    indicator LowCardinality(String),
    device_id LowCardinality(String),
    device_kind LowCardinality(String),
    district LowCardinality(String),
    ward LowCardinality(String),
    metric LowCardinality(String),
    unit LowCardinality(String),
    window_start DateTime64(3, 'UTC') CODEC(DoubleDelta, ZSTD(1)),
    window_end DateTime64(3, 'UTC') CODEC(DoubleDelta, ZSTD(1)),
    count UInt64 CODEC(T64, ZSTD(1)),
    mean Float64 CODEC(Gorilla, ZSTD(1)),
    min Float64 CODEC(Gorilla, ZSTD(1)),
    max Float64 CODEC(Gorilla, ZSTD(1)),
    last Float64 CODEC(Gorilla, ZSTD(1)),
    stddev Float64 CODEC(Gorilla, ZSTD(1)),
    revision UInt32,
    kafka_topic LowCardinality(String),
    kafka_partition UInt16,
    kafka_offset UInt64 CODEC(Delta, ZSTD(1))
) ENGINE = ReplacingMergeTree(revision)
PARTITION BY toYYYYMM(window_start)
ORDER BY (indicator, device_id, metric, window_start)
TTL toDateTime(window_start) + INTERVAL {{windows_ttl_days}} DAY
SETTINGS non_replicated_deduplication_window = 10000;
