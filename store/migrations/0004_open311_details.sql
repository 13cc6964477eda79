-- What an Open311 POST gives beyond the report itself: the address as the client gave
-- it and the service's typed attributes (returned by GET), the key and device that sent
-- it (never returned). Written by the web service in the transaction that records the
-- request. IF NOT EXISTS: web services of earlier versions created it at start.
CREATE TABLE IF NOT EXISTS open311_details (
    report_id       uuid        PRIMARY KEY,
    address_string  text,
    address_id      text,
    attributes      jsonb       NOT NULL DEFAULT '{}',
    api_key_name    text,
    device_id       text,
    created_at      timestamptz NOT NULL DEFAULT now()
);
