-- Roll-ups of the 1-minute window statistics: 1 minute -> 1 hour -> 1 day, through
-- materialized views into AggregatingMergeTree. Partial aggregates: count, sum and sum of
-- squares add up (mean and stddev are derived), min/max combine, `last` is argMax by time.
-- Read them through the views indicator_windows_1h_v / indicator_windows_1d_v.
--
-- Only revision 0 of a window feeds the roll-ups: an aggregate cannot take a row back, so a
-- later correction of a window (revision > 0) replaces it in indicator_windows but is not
-- added a second time here. The stream worker emits revision 0 only.
--
-- Replays: the sink inserts with insert_deduplication_token and
-- deduplicate_blocks_in_dependent_materialized_views = 1, and every target keeps a
-- deduplication window, so a replayed block adds nothing to either roll-up.
-- TTL: {{rollup_1h_ttl_days}} days for hours (IOC_RETENTION_ROLLUP_1H_DAYS, default 730),
-- {{rollup_1d_ttl_days}} days for days (IOC_RETENTION_ROLLUP_1D_DAYS, default 3650).
CREATE TABLE IF NOT EXISTS indicator_windows_1h (
    indicator LowCardinality(String),
    device_id LowCardinality(String),
    metric LowCardinality(String),
    window_start DateTime('UTC') CODEC(DoubleDelta, ZSTD(1)),
    device_kind SimpleAggregateFunction(any, LowCardinality(String)),
    district SimpleAggregateFunction(any, LowCardinality(String)),
    ward SimpleAggregateFunction(any, LowCardinality(String)),
    unit SimpleAggregateFunction(any, LowCardinality(String)),
    windows SimpleAggregateFunction(sum, UInt64),
    count SimpleAggregateFunction(sum, UInt64),
    sum SimpleAggregateFunction(sum, Float64),
    sumsq SimpleAggregateFunction(sum, Float64),
    min SimpleAggregateFunction(min, Float64),
    max SimpleAggregateFunction(max, Float64),
    last AggregateFunction(argMax, Float64, DateTime64(3, 'UTC'))
) ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(window_start)
ORDER BY (indicator, device_id, metric, window_start)
TTL window_start + INTERVAL {{rollup_1h_ttl_days}} DAY
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS indicator_windows_1h_mv TO indicator_windows_1h AS
SELECT
    indicator,
    device_id,
    metric,
    toStartOfHour(w.window_start) AS window_start,
    any(w.device_kind) AS device_kind,
    any(w.district) AS district,
    any(w.ward) AS ward,
    any(w.unit) AS unit,
    toUInt64(count()) AS windows,
    sum(w.count) AS count,
    sum(w.mean * w.count) AS sum,
    sum(w.count * (w.stddev * w.stddev + w.mean * w.mean)) AS sumsq,
    min(w.min) AS min,
    max(w.max) AS max,
    argMaxState(w.last, w.window_end) AS last
FROM indicator_windows AS w
WHERE w.revision = 0
GROUP BY indicator, device_id, metric, window_start;

CREATE TABLE IF NOT EXISTS indicator_windows_1d (
    indicator LowCardinality(String),
    device_id LowCardinality(String),
    metric LowCardinality(String),
    window_start Date,
    device_kind SimpleAggregateFunction(any, LowCardinality(String)),
    district SimpleAggregateFunction(any, LowCardinality(String)),
    ward SimpleAggregateFunction(any, LowCardinality(String)),
    unit SimpleAggregateFunction(any, LowCardinality(String)),
    windows SimpleAggregateFunction(sum, UInt64),
    count SimpleAggregateFunction(sum, UInt64),
    sum SimpleAggregateFunction(sum, Float64),
    sumsq SimpleAggregateFunction(sum, Float64),
    min SimpleAggregateFunction(min, Float64),
    max SimpleAggregateFunction(max, Float64),
    last AggregateFunction(argMax, Float64, DateTime64(3, 'UTC'))
) ENGINE = AggregatingMergeTree
PARTITION BY toYear(window_start)
ORDER BY (indicator, device_id, metric, window_start)
TTL window_start + INTERVAL {{rollup_1d_ttl_days}} DAY
SETTINGS non_replicated_deduplication_window = 10000;

-- Days are UTC days (the database stores UTC; Grafana shifts for display).
CREATE MATERIALIZED VIEW IF NOT EXISTS indicator_windows_1d_mv TO indicator_windows_1d AS
SELECT
    indicator,
    device_id,
    metric,
    toDate(h.window_start) AS window_start,
    any(h.device_kind) AS device_kind,
    any(h.district) AS district,
    any(h.ward) AS ward,
    any(h.unit) AS unit,
    sum(h.windows) AS windows,
    sum(h.count) AS count,
    sum(h.sum) AS sum,
    sum(h.sumsq) AS sumsq,
    min(h.min) AS min,
    max(h.max) AS max,
    argMaxMergeState(h.last) AS last
FROM indicator_windows_1h AS h
GROUP BY indicator, device_id, metric, window_start;

CREATE VIEW IF NOT EXISTS indicator_windows_1h_v AS
SELECT
    indicator,
    device_id,
    metric,
    window_start,
    any(h.device_kind) AS device_kind,
    any(h.district) AS district,
    any(h.ward) AS ward,
    any(h.unit) AS unit,
    sum(h.windows) AS windows,
    sum(h.count) AS count,
    sum(h.sum) / sum(h.count) AS mean,
    sqrt(greatest(sum(h.sumsq) / sum(h.count) - pow(sum(h.sum) / sum(h.count), 2), 0)) AS stddev,
    min(h.min) AS min,
    max(h.max) AS max,
    argMaxMerge(h.last) AS last
FROM indicator_windows_1h AS h
GROUP BY indicator, device_id, metric, window_start;

CREATE VIEW IF NOT EXISTS indicator_windows_1d_v AS
SELECT
    indicator,
    device_id,
    metric,
    window_start,
    any(d.device_kind) AS device_kind,
    any(d.district) AS district,
    any(d.ward) AS ward,
    any(d.unit) AS unit,
    sum(d.windows) AS windows,
    sum(d.count) AS count,
    sum(d.sum) / sum(d.count) AS mean,
    sqrt(greatest(sum(d.sumsq) / sum(d.count) - pow(sum(d.sum) / sum(d.count), 2), 0)) AS stddev,
    min(d.min) AS min,
    max(d.max) AS max,
    argMaxMerge(d.last) AS last
FROM indicator_windows_1d AS d
GROUP BY indicator, device_id, metric, window_start;
