-- TimescaleDB mode: the time-series tables of 0001 become hypertables, raw telemetry has
-- a retention policy and old chunks of the high-volume tables are compressed.
-- (Hypertable API of TimescaleDB >= 2.13: create_hypertable(relation, by_range(...)).)

SELECT create_hypertable('reports', by_range('reported_at', INTERVAL '7 days'),
                         create_default_indexes => false, if_not_exists => true);
SELECT create_hypertable('sensor_alerts', by_range('observed_at', INTERVAL '7 days'),
                         create_default_indexes => false, if_not_exists => true);
SELECT create_hypertable('telemetry', by_range('observed_at', INTERVAL '1 day'),
                         create_default_indexes => false, if_not_exists => true);
SELECT create_hypertable('device_status', by_range('at', INTERVAL '7 days'),
                         create_default_indexes => false, if_not_exists => true);
SELECT create_hypertable('crew_positions', by_range('at', INTERVAL '1 day'),
                         create_default_indexes => false, if_not_exists => true);
SELECT create_hypertable('crew_status_events', by_range('at', INTERVAL '7 days'),
                         create_default_indexes => false, if_not_exists => true);
SELECT create_hypertable('incident_events', by_range('at', INTERVAL '7 days'),
                         create_default_indexes => false, if_not_exists => true);
SELECT create_hypertable('assignments', by_range('created_at', INTERVAL '7 days'),
                         create_default_indexes => false, if_not_exists => true);
SELECT create_hypertable('dispatch_runs', by_range('at', INTERVAL '30 days'),
                         create_default_indexes => false, if_not_exists => true);
SELECT create_hypertable('dead_letters', by_range('received_at', INTERVAL '30 days'),
                         create_default_indexes => false, if_not_exists => true);

-- Raw telemetry is kept 30 days; the aggregates and alerts outlive it.
SELECT add_retention_policy('telemetry', drop_after => INTERVAL '30 days',
                            if_not_exists => true);

-- Compression: segment by the series id so a device's or crew's history decompresses
-- alone; order by time, newest first, as the API reads it.
ALTER TABLE telemetry SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'device_id',
    timescaledb.compress_orderby = 'observed_at DESC'
);
SELECT add_compression_policy('telemetry', compress_after => INTERVAL '2 days',
                              if_not_exists => true);

ALTER TABLE crew_positions SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'crew_id',
    timescaledb.compress_orderby = 'at DESC'
);
SELECT add_compression_policy('crew_positions', compress_after => INTERVAL '7 days',
                              if_not_exists => true);

ALTER TABLE device_status SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'device_id',
    timescaledb.compress_orderby = 'at DESC'
);
SELECT add_compression_policy('device_status', compress_after => INTERVAL '7 days',
                              if_not_exists => true);
