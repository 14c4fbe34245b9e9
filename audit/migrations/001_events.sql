-- Append-only audit trail of denials. Rows are only inserted (idempotently, by id), never updated.
CREATE TABLE IF NOT EXISTS audit_events (
    id              text        PRIMARY KEY,          -- ULID: time-ordered
    time            timestamptz NOT NULL,
    kind            text        NOT NULL,
    service         text        NOT NULL,
    domain          text        NOT NULL,
    rule            text        NOT NULL,
    entries         jsonb       NOT NULL DEFAULT '[]', -- [{"key": ..., "value": ...}], values bounded
    client_ip       text        NOT NULL,
    proxy_ip        text        NOT NULL,
    method          text        NOT NULL,
    host            text        NOT NULL,
    path            text        NOT NULL,
    limit_name      text        NOT NULL,
    limit_requests  bigint      NOT NULL,
    limit_window_ms bigint      NOT NULL,
    algorithm       text        NOT NULL,
    remaining       bigint      NOT NULL,
    retry_after_ms  bigint      NOT NULL,
    replica         text        NOT NULL,
    config_version  bigint      NOT NULL,
    shadow          boolean     NOT NULL,
    degraded        boolean     NOT NULL
);
-- No index on time: id is a ULID (time-ordered), so time ranges are id ranges on the primary key. One
-- secondary index for "what did this client do"; each extra index roughly halves the insert rate.
CREATE INDEX IF NOT EXISTS audit_events_client ON audit_events (client_ip, id);
