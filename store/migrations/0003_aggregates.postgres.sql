-- Plain PostgreSQL mode: the dashboard aggregates are materialised views with the same
-- names and columns as the continuous aggregates, refreshed by store.refresh_aggregates().
-- date_bin with TimescaleDB's default origin (2000-01-03 UTC) buckets exactly like
-- time_bucket, so both modes report the same buckets.

CREATE MATERIALIZED VIEW reports_hourly AS
SELECT date_bin(INTERVAL '1 hour', reported_at, TIMESTAMPTZ '2000-01-03 00:00:00+00')
           AS bucket,
       category,
       district,
       count(*) AS reports
FROM reports
GROUP BY 1, 2, 3;
CREATE UNIQUE INDEX reports_hourly_key ON reports_hourly (bucket, category, district)
    NULLS NOT DISTINCT;

CREATE MATERIALIZED VIEW incidents_hourly AS
SELECT date_bin(INTERVAL '1 hour', at, TIMESTAMPTZ '2000-01-03 00:00:00+00') AS bucket,
       sum(CASE WHEN status = 'open' AND first_of_status THEN 1 ELSE 0 END) AS opened,
       sum(CASE WHEN status = 'resolved' AND first_of_status THEN 1 ELSE 0 END) AS resolved
FROM incident_events
GROUP BY 1;
CREATE UNIQUE INDEX incidents_hourly_key ON incidents_hourly (bucket);

CREATE MATERIALIZED VIEW incident_times_daily AS
SELECT date_bin(INTERVAL '1 day', at, TIMESTAMPTZ '2000-01-03 00:00:00+00') AS day,
       sum(CASE WHEN status = 'assigned' AND first_of_status THEN 1 ELSE 0 END)
           AS n_assigned,
       sum(CASE WHEN status = 'assigned' AND first_of_status THEN since_open_s ELSE 0 END)
           AS sum_assign_s,
       sum(CASE WHEN status = 'resolved' AND first_of_status THEN 1 ELSE 0 END)
           AS n_resolved,
       sum(CASE WHEN status = 'resolved' AND first_of_status THEN since_open_s ELSE 0 END)
           AS sum_resolve_s
FROM incident_events
GROUP BY 1;
CREATE UNIQUE INDEX incident_times_daily_key ON incident_times_daily (day);
