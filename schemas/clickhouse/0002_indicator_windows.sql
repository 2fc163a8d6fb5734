-- Closed window results per device and metric. A late update of a window carries a higher
-- revision and replaces the earlier row (ReplacingMergeTree); read with FINAL or argMax.
CREATE TABLE IF NOT EXISTS indicator_windows (
    indicator LowCardinality(String),
    device_id LowCardinality(String),
    device_kind LowCardinality(String),
    district LowCardinality(String),
    ward LowCardinality(String),
    metric LowCardinality(String),
    unit LowCardinality(String),
    window_start DateTime64(3, 'UTC'),
    window_end DateTime64(3, 'UTC'),
    count UInt64,
    mean Float64,
    min Float64,
    max Float64,
    last Float64,
    stddev Float64,
    revision UInt32,
    kafka_topic LowCardinality(String),
    kafka_partition UInt16,
    kafka_offset UInt64
) ENGINE = ReplacingMergeTree(revision)
PARTITION BY toYYYYMM(window_start)
ORDER BY (indicator, device_id, metric, window_start)
SETTINGS non_replicated_deduplication_window = 10000;
