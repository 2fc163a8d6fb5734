-- Views that keep Grafana panel SQL short. Times are UTC; filter them with $__timeFilter.

-- VN_AQI per district per hour from the derived indicator vn_aqi_1h (station or district
-- subjects): the district's value is the worst (highest) one reported for it in that hour.
CREATE VIEW IF NOT EXISTS vn_aqi_district_hourly AS
SELECT
    toStartOfHour(window_start) AS time,
    district,
    max(value) AS vn_aqi,
    argMax(level, value) AS level,
    argMax(labels['dominant'], value) AS dominant,
    uniqExact(subject_id) AS subjects
FROM indicator_values FINAL
WHERE indicator = 'vn_aqi_1h' AND district != ''
GROUP BY time, district;

-- Each river gauge's latest level against its station's flood alarm levels (BĐ I-III).
-- alarm: 0 below BĐ I, 1-3 = BĐ I-III reached (level >= threshold).
CREATE VIEW IF NOT EXISTS river_levels_vs_alarm AS
SELECT
    r.device_id AS device_id,
    r.district AS district,
    f.station_id AS station_id,
    f.name AS station,
    f.river AS river,
    r.value AS level_m,
    r.event_time AS event_time,
    f.bd1_m AS bd1_m,
    f.bd2_m AS bd2_m,
    f.bd3_m AS bd3_m,
    multiIf(
        f.bd3_m IS NOT NULL AND r.value >= f.bd3_m, 3,
        f.bd2_m IS NOT NULL AND r.value >= f.bd2_m, 2,
        r.value >= f.bd1_m, 1,
        0) AS alarm,
    ['Dưới BĐ I', 'BĐ I', 'BĐ II', 'BĐ III'][alarm + 1] AS alarm_label,
    r.value - f.bd1_m AS above_bd1_m
FROM latest_readings_v AS r
INNER JOIN (SELECT * FROM flood_levels FINAL WHERE active) AS f ON f.station_id = r.station
WHERE r.metric = 'level';

-- Hourly maximum level of each gauge (from the 1-hour roll-up) with its alarm levels, for
-- time-series panels with threshold lines.
CREATE VIEW IF NOT EXISTS river_levels_hourly AS
SELECT
    h.window_start AS time,
    h.device_id AS device_id,
    h.district AS district,
    f.name AS station,
    h.max AS level_max_m,
    h.mean AS level_mean_m,
    f.bd1_m AS bd1_m,
    f.bd2_m AS bd2_m,
    f.bd3_m AS bd3_m
FROM indicator_windows_1h_v AS h
INNER JOIN (SELECT device_id, station FROM devices FINAL WHERE active) AS d
    ON d.device_id = h.device_id
INNER JOIN (SELECT * FROM flood_levels FINAL WHERE active) AS f ON f.station_id = d.station
WHERE h.metric = 'level';

-- Service KPIs per agency as the stream worker derives them (indicator_values with
-- subject_kind 'agency'): one row per indicator, agency and window.
CREATE VIEW IF NOT EXISTS service_kpis_by_agency AS
SELECT
    window_start AS time,
    subject_id AS agency,
    district,
    indicator,
    value,
    level,
    components
FROM indicator_values FINAL
WHERE subject_kind = 'agency';

-- Public-service applications per agency and day (Asia/Ho_Chi_Minh), straight from the
-- events: resolved, resolved on time (resolved_at <= due_at) and late, and the on-time rate.
CREATE VIEW IF NOT EXISTS service_applications_daily AS
SELECT
    toDate(time, 'Asia/Ho_Chi_Minh') AS day,
    agency,
    any(district) AS district,
    countIf(type = 'vn.longxuyen.application.submitted') AS submitted,
    countIf(type = 'vn.longxuyen.application.resolved') AS resolved,
    countIf(
        type = 'vn.longxuyen.application.resolved'
        AND parseDateTime64BestEffort(JSONExtractString(data, 'resolved_at'), 3)
            <= parseDateTime64BestEffort(JSONExtractString(data, 'due_at'), 3)
    ) AS on_time,
    resolved - on_time AS late,
    if(resolved > 0, on_time / resolved, NULL) AS on_time_rate
FROM events FINAL
WHERE type IN ('vn.longxuyen.application.submitted', 'vn.longxuyen.application.resolved')
GROUP BY day, agency;
