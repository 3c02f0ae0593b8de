-- The event log (PostgreSQL).
--
-- No reader may skip an event (DESIGN rule 2). A sequence is not enough: a transaction can take
-- position 5, another take 6 and commit first, and a reader at 6 would never see 5. Here the
-- position is made from the writing transaction's id (`txid << 20 | index in the append`), and
-- readers only read events of transactions below a horizon: the oldest id of an appender still
-- running, or the next id when none runs (see `HORIZON` in store/src/postgres.rs; appenders hold a
-- shared advisory lock, taken before their id exists, so readers can tell them from other
-- transactions). Every event a reader may still see later belongs to a transaction at or above that
-- horizon, so it has a higher position than anything already read. Positions are increasing in
-- reading order but not dense.
CREATE TABLE events (
    position       BIGINT      PRIMARY KEY,
    transaction_id xid8        NOT NULL DEFAULT pg_current_xact_id(),
    event_id       UUID        NOT NULL UNIQUE,
    stream         TEXT        NOT NULL,
    version        BIGINT      NOT NULL,
    event_type     TEXT        NOT NULL,
    data           JSONB       NOT NULL,
    metadata       JSONB       NOT NULL,
    recorded_at    TIMESTAMPTZ NOT NULL,
    UNIQUE (stream, version)
);

-- One row per stream: its version (optimistic concurrency) and the last transaction that wrote
-- it. An append whose transaction is older than that is refused as a conflict, so the order of a
-- stream's events in the global log is always their version order.
CREATE TABLE streams (
    stream              TEXT   PRIMARY KEY,
    version             BIGINT NOT NULL,
    last_transaction_id xid8   NOT NULL
);

CREATE TABLE unique_keys (
    scope TEXT NOT NULL,
    key   TEXT NOT NULL,
    owner TEXT NOT NULL,
    PRIMARY KEY (scope, key)
);

CREATE TABLE idempotency_keys (
    key          TEXT        PRIMARY KEY,
    request_hash TEXT        NOT NULL,
    status       INTEGER     NOT NULL,
    body         TEXT        NOT NULL,
    position     BIGINT      NOT NULL,
    recorded_at  TIMESTAMPTZ NOT NULL
);

CREATE TABLE checkpoints (
    name       TEXT        PRIMARY KEY,
    position   BIGINT      NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
