-- Dimension tables loaded from configuration by `iocstream db load-devices` (also run by
-- `iocstream db migrate`): the device registry (deploy/devices.yaml) and the flood alarm
-- levels (deploy/flood_levels.yaml). Each load inserts every entry with a newer loaded_at;
-- entries no longer in the file are inserted once more with active = 0. Read with FINAL and
-- WHERE active.
CREATE TABLE IF NOT EXISTS devices (
    device_id String,
    kind LowCardinality(String),
    name String,
    district LowCardinality(String),
    ward LowCardinality(String),
    lat Float64,
    lon Float64,
    expected_interval_s Float64,
    metrics Array(String),
    labels Map(String, String),
    station LowCardinality(String),
    active Bool,
    loaded_at DateTime64(3, 'UTC')
) ENGINE = ReplacingMergeTree(loaded_at)
ORDER BY device_id;

CREATE TABLE IF NOT EXISTS flood_levels (
    station_id String,
    name String,
    river String,
    bd1_m Float64,
    bd2_m Nullable(Float64),
    bd3_m Nullable(Float64),
    active Bool,
    loaded_at DateTime64(3, 'UTC')
) ENGINE = ReplacingMergeTree(loaded_at)
ORDER BY station_id;
