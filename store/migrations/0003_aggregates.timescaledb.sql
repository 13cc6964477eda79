-- TimescaleDB mode: continuous aggregates for the dashboard. Created WITH NO DATA (so the
-- migration stays inside its transaction) and real-time (materialized_only = false), so
-- a query sees materialised buckets plus the not-yet-materialised tail; the refresh
-- policies keep the materialised part current in the background.

CREATE MATERIALIZED VIEW reports_hourly
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 hour', reported_at) AS bucket,
       category,
       district,
       count(*) AS reports
FROM reports
GROUP BY bucket, category, district
WITH NO DATA;

CREATE MATERIALIZED VIEW incidents_hourly
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 hour', at) AS bucket,
       sum(CASE WHEN status = 'open' AND first_of_status THEN 1 ELSE 0 END) AS opened,
       sum(CASE WHEN status = 'resolved' AND first_of_status THEN 1 ELSE 0 END) AS resolved
FROM incident_events
GROUP BY bucket
WITH NO DATA;

-- Sums and counts rather than averages, so any range of days combines exactly.
CREATE MATERIALIZED VIEW incident_times_daily
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 day', at) AS day,
       sum(CASE WHEN status = 'assigned' AND first_of_status THEN 1 ELSE 0 END)
           AS n_assigned,
       sum(CASE WHEN status = 'assigned' AND first_of_status THEN since_open_s ELSE 0 END)
           AS sum_assign_s,
       sum(CASE WHEN status = 'resolved' AND first_of_status THEN 1 ELSE 0 END)
           AS n_resolved,
       sum(CASE WHEN status = 'resolved' AND first_of_status THEN since_open_s ELSE 0 END)
           AS sum_resolve_s
FROM incident_events
GROUP BY day
WITH NO DATA;

SELECT add_continuous_aggregate_policy('reports_hourly',
    start_offset => INTERVAL '7 days', end_offset => INTERVAL '1 hour',
    schedule_interval => INTERVAL '15 minutes', if_not_exists => true);
SELECT add_continuous_aggregate_policy('incidents_hourly',
    start_offset => INTERVAL '7 days', end_offset => INTERVAL '1 hour',
    schedule_interval => INTERVAL '15 minutes', if_not_exists => true);
SELECT add_continuous_aggregate_policy('incident_times_daily',
    start_offset => INTERVAL '30 days', end_offset => INTERVAL '1 hour',
    schedule_interval => INTERVAL '1 hour', if_not_exists => true);
