-- The event log (SQLite). Appends are serialised through one writer connection, so the rowid
-- `position` is handed out in commit order and readers can never pass a later-committing event.
CREATE TABLE events (
    position    INTEGER PRIMARY KEY,
    event_id    TEXT    NOT NULL UNIQUE,
    stream      TEXT    NOT NULL,
    version     INTEGER NOT NULL,
    event_type  TEXT    NOT NULL,
    data        TEXT    NOT NULL,
    metadata    TEXT    NOT NULL,
    recorded_at TEXT    NOT NULL,
    UNIQUE (stream, version)
);

-- Set invariants (a code issued once, an external id once per legal entity, ...): written in the
-- same transaction as the events that rely on them. `owner` is the stream that holds the key.
CREATE TABLE unique_keys (
    scope TEXT NOT NULL,
    key   TEXT NOT NULL,
    owner TEXT NOT NULL,
    PRIMARY KEY (scope, key)
) WITHOUT ROWID;

-- Idempotency-Key: the first answer to a command, returned again for a repeat.
CREATE TABLE idempotency_keys (
    key          TEXT    PRIMARY KEY,
    request_hash TEXT    NOT NULL,
    status       INTEGER NOT NULL,
    body         TEXT    NOT NULL,
    position     INTEGER NOT NULL,
    recorded_at  TEXT    NOT NULL
) WITHOUT ROWID;

-- Where each projector (and the relay) is in the log; moved in the transaction that applies.
CREATE TABLE checkpoints (
    name       TEXT    PRIMARY KEY,
    position   INTEGER NOT NULL,
    updated_at TEXT    NOT NULL
);
