-- Latest value per device and metric, kept up to date by a materialized view on readings so
-- that "now" panels never scan the raw table. argMax by event time: a late reading does not
-- replace a newer one. Read through the view latest_readings_v.
CREATE TABLE IF NOT EXISTS latest_readings (
    device_id LowCardinality(String),
    metric LowCardinality(String),
    device_kind SimpleAggregateFunction(any, LowCardinality(String)),
    district SimpleAggregateFunction(any, LowCardinality(String)),
    ward SimpleAggregateFunction(any, LowCardinality(String)),
    unit SimpleAggregateFunction(any, LowCardinality(String)),
    readings SimpleAggregateFunction(sum, UInt64),
    event_time SimpleAggregateFunction(max, DateTime64(3, 'UTC')),
    value AggregateFunction(argMax, Float64, DateTime64(3, 'UTC'))
) ENGINE = AggregatingMergeTree
ORDER BY (device_id, metric)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS latest_readings_mv TO latest_readings AS
SELECT
    device_id,
    metric,
    any(r.device_kind) AS device_kind,
    any(r.district) AS district,
    any(r.ward) AS ward,
    any(r.unit) AS unit,
    toUInt64(count()) AS readings,
    max(r.event_time) AS event_time,
    argMaxState(r.value, r.event_time) AS value
FROM readings AS r
GROUP BY device_id, metric;

-- One row per device and metric: the latest value, its time and the device's registry entry.
CREATE VIEW IF NOT EXISTS latest_readings_v AS
SELECT
    l.device_id AS device_id,
    l.metric AS metric,
    l.device_kind AS device_kind,
    l.district AS district,
    l.ward AS ward,
    l.unit AS unit,
    l.value AS value,
    l.event_time AS event_time,
    l.readings AS readings,
    d.name AS device_name,
    d.lat AS lat,
    d.lon AS lon,
    d.station AS station
FROM (
    SELECT
        device_id,
        metric,
        any(x.device_kind) AS device_kind,
        any(x.district) AS district,
        any(x.ward) AS ward,
        any(x.unit) AS unit,
        argMaxMerge(x.value) AS value,
        max(x.event_time) AS event_time,
        sum(x.readings) AS readings
    FROM latest_readings AS x
    GROUP BY device_id, metric
) AS l
LEFT JOIN (SELECT device_id, name, lat, lon, station FROM devices FINAL WHERE active) AS d
    ON d.device_id = l.device_id;
