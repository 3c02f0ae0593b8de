-- Read models of requisition numbers. Disposable: `careledger projections rebuild requisitions`
-- empties them and replays the log. Times are RFC 3339 UTC text so both backends dump identically.
-- (Uniqueness of numbers is not kept here but in `unique_keys`, scope `requisition`, written in
-- the append's transaction.)

-- One row per encounter's number, with the salt that made it and who issued it.
CREATE TABLE requisitions (
    requisition     TEXT   PRIMARY KEY,
    encounter_id    TEXT   NOT NULL UNIQUE,
    salt            TEXT   NOT NULL,
    issued_at       TEXT   NOT NULL,
    issued_position BIGINT NOT NULL,
    issued_by       TEXT,
    issued_for      TEXT,
    correlation_id  TEXT   NOT NULL
);

-- The entities (service requests) sharing a number, in the order they were added.
CREATE TABLE requisition_entities (
    requisition TEXT   NOT NULL,
    entity_type TEXT   NOT NULL,
    entity_id   TEXT   NOT NULL,
    added_at    TEXT   NOT NULL,
    position    BIGINT NOT NULL,
    PRIMARY KEY (requisition, entity_type, entity_id)
);
CREATE INDEX requisition_entities_by_entity ON requisition_entities (entity_type, entity_id);
