-- Plain PostgreSQL mode: the tables of 0001 stay ordinary tables. Retention of raw
-- telemetry is a function that store.apply_retention() calls (TimescaleDB mode has a
-- background policy instead); it deletes what the TimescaleDB policy would drop.

CREATE FUNCTION cityfix_apply_retention(keep interval DEFAULT INTERVAL '30 days')
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    gone bigint;
BEGIN
    DELETE FROM telemetry WHERE observed_at < now() - keep;
    GET DIAGNOSTICS gone = ROW_COUNT;
    RETURN gone;
END
$$;
