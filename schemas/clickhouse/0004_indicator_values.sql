-- Derived city indicators (ioc.indicator-values/v1): VN_AQI, flood level, congestion, service
-- KPIs, per device, ward, district, city or agency. One row per indicator, subject and window;
-- a later revision of the same window replaces the earlier one (read with FINAL).
-- TTL {{values_ttl_days}} days (IOC_RETENTION_VALUES_DAYS, default 730).
CREATE TABLE IF NOT EXISTS indicator_values (
    indicator LowCardinality(String),
    subject_kind LowCardinality(String),
    subject_id LowCardinality(String),
    district LowCardinality(String),
    window_start DateTime64(3, 'UTC') CODEC(DoubleDelta, ZSTD(1)),
    window_end DateTime64(3, 'UTC') CODEC(DoubleDelta, ZSTD(1)),
    value Float64 CODEC(Gorilla, ZSTD(1)),
    level LowCardinality(String),
    components Map(String, Float64) CODEC(ZSTD(1)),
    labels Map(String, String) CODEC(ZSTD(1)),
    revision UInt32,
    kafka_topic LowCardinality(String),
    kafka_partition UInt16,
    kafka_offset UInt64 CODEC(Delta, ZSTD(1))
) ENGINE = ReplacingMergeTree(revision)
PARTITION BY toYYYYMM(window_start)
ORDER BY (indicator, subject_kind, subject_id, window_start)
TTL toDateTime(window_start) + INTERVAL {{values_ttl_days}} DAY
SETTINGS non_replicated_deduplication_window = 10000;
