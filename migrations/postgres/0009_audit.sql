-- The audit read model: who did what, when, under which request. One row per event of the log
-- with its metadata, indexed for each filter of `GET /api/v1/audit`; the event's data is not
-- copied here (answers read it from the log by position). Disposable:
-- `careledger projections rebuild audit` empties it and replays the log. Times are RFC 3339 UTC
-- text with microseconds, so ranges compare as text and both backends dump identically.
CREATE TABLE audit_events (
    position        BIGINT  PRIMARY KEY,
    event_id        TEXT    NOT NULL,
    stream          TEXT    NOT NULL,
    version         BIGINT  NOT NULL,
    context         TEXT    NOT NULL,
    event_type      TEXT    NOT NULL,
    recorded_at     TEXT    NOT NULL,
    user_id         TEXT,
    legal_entity_id TEXT,
    command         TEXT    NOT NULL,
    correlation_id  TEXT    NOT NULL,
    causation_id    TEXT
);
-- Each filter with the position after it: a page of one filter is an index range in log order.
CREATE INDEX audit_events_by_user ON audit_events (user_id, position);
CREATE INDEX audit_events_by_legal_entity ON audit_events (legal_entity_id, position);
CREATE INDEX audit_events_by_correlation ON audit_events (correlation_id, position);
CREATE INDEX audit_events_by_stream ON audit_events (stream, position);
CREATE INDEX audit_events_by_context ON audit_events (context, position);
CREATE INDEX audit_events_by_type ON audit_events (event_type, position);
CREATE INDEX audit_events_by_time ON audit_events (recorded_at, position);
