-- cityfix schema, both modes: the same tables on plain PostgreSQL and on TimescaleDB.
--
-- Time-series tables carry their time column in the primary key, because a hypertable's
-- unique indexes must include its partitioning column; the key is the message id (or the
-- natural key where a message has none), so a replay of the same message is a no-op.
-- Migration 0002 turns these into hypertables when TimescaleDB is the active mode.

-- --- time series ---------------------------------------------------------------------

CREATE TABLE reports (
    report_id    uuid             NOT NULL,
    reported_at  timestamptz      NOT NULL,
    category     text             NOT NULL,
    lat          double precision NOT NULL,
    lon          double precision NOT NULL,
    description  text,
    media_url    text,
    asset_id     text,
    client_id    text,
    district     text,
    received_at  timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (report_id, reported_at)
);
CREATE INDEX reports_reported_at_idx ON reports (reported_at DESC);
CREATE INDEX reports_category_time_idx ON reports (category, reported_at DESC);
CREATE INDEX reports_lat_lon_idx ON reports (lat, lon);

CREATE TABLE sensor_alerts (
    alert_id     uuid             NOT NULL,
    observed_at  timestamptz      NOT NULL,
    device_id    text             NOT NULL,
    kind         text             NOT NULL,
    lat          double precision NOT NULL,
    lon          double precision NOT NULL,
    value        double precision NOT NULL,
    unit         text             NOT NULL,
    asset_id     text,
    PRIMARY KEY (alert_id, observed_at)
);
CREATE INDEX sensor_alerts_observed_at_idx ON sensor_alerts (observed_at DESC);
CREATE INDEX sensor_alerts_device_time_idx ON sensor_alerts (device_id, observed_at DESC);

CREATE TABLE telemetry (
    device_id    text        NOT NULL,
    observed_at  timestamptz NOT NULL,
    metrics      jsonb       NOT NULL,
    PRIMARY KEY (device_id, observed_at)
);
-- No index on observed_at alone: telemetry is read per device (the key serves that) and
-- a second index on the highest-volume table costs a third of its write throughput.

CREATE TABLE device_status (
    device_id  text        NOT NULL,
    at         timestamptz NOT NULL,
    online     boolean     NOT NULL,
    PRIMARY KEY (device_id, at)
);
CREATE INDEX device_status_at_idx ON device_status (at DESC);

CREATE TABLE crew_positions (
    crew_id      text             NOT NULL,
    at           timestamptz      NOT NULL,
    lat          double precision NOT NULL,
    lon          double precision NOT NULL,
    heading_deg  double precision,
    speed_kph    double precision,
    PRIMARY KEY (crew_id, at)
);
CREATE INDEX crew_positions_at_idx ON crew_positions (at DESC);

CREATE TABLE crew_status_events (
    crew_id      text        NOT NULL,
    at           timestamptz NOT NULL,
    status       text        NOT NULL,
    incident_id  text,
    skills       jsonb,
    shift_end    timestamptz,
    PRIMARY KEY (crew_id, at, status)
);
CREATE INDEX crew_status_events_at_idx ON crew_status_events (at DESC);

-- Every lifecycle transition of every incident, once. ``first_of_status`` marks the first
-- time an incident reached a status (the first assignment, the first resolution), which
-- is what the time-to-assign and time-to-resolve aggregates average.
CREATE TABLE incident_events (
    incident_id      text             NOT NULL,
    at               timestamptz      NOT NULL,
    status           text             NOT NULL,
    seq              integer          NOT NULL,
    reason           text,
    version          integer          NOT NULL,
    opened_at        timestamptz      NOT NULL,
    since_open_s     double precision NOT NULL,
    first_of_status  boolean          NOT NULL,
    category         text             NOT NULL,
    priority         text             NOT NULL,
    district         text,
    PRIMARY KEY (incident_id, status, at)
);
CREATE INDEX incident_events_at_idx ON incident_events (at DESC);
CREATE INDEX incident_events_incident_idx ON incident_events (incident_id, at);

CREATE TABLE assignments (
    crew_id     text        NOT NULL,
    plan_id     text        NOT NULL,
    created_at  timestamptz NOT NULL,
    stops       jsonb       NOT NULL,
    route       jsonb       NOT NULL,
    leg_eta_s   jsonb       NOT NULL DEFAULT '[]',
    PRIMARY KEY (crew_id, plan_id, created_at)
);
CREATE INDEX assignments_created_at_idx ON assignments (created_at DESC);
CREATE INDEX assignments_crew_time_idx ON assignments (crew_id, created_at DESC);

CREATE TABLE dispatch_runs (
    plan_id     text             NOT NULL,
    at          timestamptz      NOT NULL,
    trigger     text             NOT NULL,
    jobs        integer          NOT NULL,
    crews       integer          NOT NULL,
    matrix_ms   double precision NOT NULL,
    solve_ms    double precision NOT NULL,
    objective   double precision NOT NULL,
    unassigned  integer          NOT NULL,
    moved       integer          NOT NULL,
    PRIMARY KEY (plan_id, at)
);
CREATE INDEX dispatch_runs_at_idx ON dispatch_runs (at DESC);

-- Dead letters have no id of their own: the payload's digest is the natural key.
CREATE TABLE dead_letters (
    topic           text        NOT NULL,
    received_at     timestamptz NOT NULL,
    payload_sha256  text        NOT NULL,
    payload_b64     text        NOT NULL,
    reason          text        NOT NULL,
    field           text,
    size_bytes      integer     NOT NULL,
    PRIMARY KEY (topic, payload_sha256, received_at)
);
CREATE INDEX dead_letters_received_at_idx ON dead_letters (received_at DESC);

-- --- current state -------------------------------------------------------------------

-- One row per incident, overwritten only by a newer version of it.
CREATE TABLE incidents (
    incident_id          text             PRIMARY KEY,
    version              integer          NOT NULL,
    status               text             NOT NULL,
    category             text             NOT NULL,
    family               text             NOT NULL,
    priority             text             NOT NULL,
    manual_priority      text,
    score                double precision NOT NULL,
    score_breakdown      jsonb            NOT NULL,
    lat                  double precision NOT NULL,
    lon                  double precision NOT NULL,
    evidence             jsonb            NOT NULL,
    reporters            integer          NOT NULL,
    sensor_corroborated  boolean          NOT NULL DEFAULT false,
    opened_at            timestamptz      NOT NULL,
    updated_at           timestamptz      NOT NULL,
    expected_at          timestamptz      NOT NULL,  -- the SLA deadline
    assigned_at          timestamptz,
    resolved_at          timestamptz,
    history              jsonb            NOT NULL DEFAULT '[]',
    asset_id             text,
    edge                 jsonb,
    road_class           text,
    district             text,
    crew_id              text,
    merged_into          text
);
CREATE INDEX incidents_active_idx ON incidents (priority, opened_at)
    WHERE status IN ('open', 'assigned', 'en_route', 'on_site', 'reopened');
CREATE INDEX incidents_status_priority_idx ON incidents (status, priority);
CREATE INDEX incidents_category_idx ON incidents (category, opened_at DESC);
CREATE INDEX incidents_district_idx ON incidents (district, opened_at DESC);
CREATE INDEX incidents_opened_at_idx ON incidents (opened_at DESC);
CREATE INDEX incidents_resolved_at_idx ON incidents (resolved_at DESC)
    WHERE resolved_at IS NOT NULL;

-- One row per crew: its last status, last position and current plan, each kept newest
-- by its own timestamp (they arrive on different topics, in any order).
CREATE TABLE crews (
    crew_id      text PRIMARY KEY,
    status       text,
    incident_id  text,
    skills       jsonb,
    shift_end    timestamptz,
    status_at    timestamptz,
    lat          double precision,
    lon          double precision,
    heading_deg  double precision,
    speed_kph    double precision,
    position_at  timestamptz,
    plan_id      text,
    plan_at      timestamptz,
    stops        jsonb,
    route        jsonb
);

-- A citizen request's status follows the incident its report became evidence of.
CREATE TABLE report_incident (
    report_id         uuid        PRIMARY KEY,
    incident_id       text        NOT NULL,
    incident_version  integer     NOT NULL,
    status            text        NOT NULL,
    merged_into       text,
    updated_at        timestamptz NOT NULL
);
CREATE INDEX report_incident_incident_idx ON report_incident (incident_id);

-- --- API -----------------------------------------------------------------------------

-- Personal data given with an Open311 request, kept apart from the report and never
-- joined into what GET returns.
CREATE TABLE reporter_contacts (
    report_id   uuid        PRIMARY KEY,
    email       text,
    phone       text,
    first_name  text,
    last_name   text,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_keys (
    key_id      bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text        NOT NULL,
    key_hash    text        NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked     boolean     NOT NULL DEFAULT false,
    revoked_at  timestamptz
);

CREATE TABLE users (
    username       text        PRIMARY KEY,
    password_hash  text        NOT NULL,
    role           text        NOT NULL CHECK (role IN ('viewer', 'dispatcher', 'admin')),
    created_at     timestamptz NOT NULL DEFAULT now(),
    disabled       boolean     NOT NULL DEFAULT false
);
