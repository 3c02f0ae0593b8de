-- Read models of the eHealth registry. Disposable: `careledger projections rebuild registry`
-- empties them and replays the log. Times are RFC 3339 UTC text, dates YYYY-MM-DD, so both
-- backends dump identically.

-- Legal entities and divisions: the reference data equipment is checked against.
CREATE TABLE legal_entities (
    legal_entity_id TEXT PRIMARY KEY,
    name            TEXT NOT NULL,
    edrpou          TEXT NOT NULL,
    type            TEXT NOT NULL,
    status          TEXT NOT NULL,
    inserted_at     TEXT NOT NULL,
    inserted_by     TEXT,
    updated_at      TEXT NOT NULL,
    updated_by      TEXT
);

CREATE TABLE divisions (
    division_id     TEXT    PRIMARY KEY,
    legal_entity_id TEXT    NOT NULL,
    name            TEXT    NOT NULL,
    type            TEXT    NOT NULL,
    status          TEXT    NOT NULL,
    is_active       BOOLEAN NOT NULL,
    inserted_at     TEXT    NOT NULL,
    inserted_by     TEXT,
    updated_at      TEXT    NOT NULL,
    updated_by      TEXT
);
CREATE INDEX divisions_by_legal_entity ON divisions (legal_entity_id);

-- One row per equipment with its ACTIVE division link, status and availability.
CREATE TABLE equipment (
    equipment_id        TEXT    PRIMARY KEY,
    legal_entity_id     TEXT    NOT NULL,
    division_id         TEXT    NOT NULL,
    division_link_id    TEXT    NOT NULL,
    linked_at           TEXT    NOT NULL,
    type                TEXT    NOT NULL,
    external_id         TEXT    NOT NULL,
    name                TEXT    NOT NULL,
    serial_number       TEXT,
    manufacturer        TEXT,
    model_number        TEXT,
    lot_number          TEXT,
    udi                 TEXT    NOT NULL,
    manufacture_date    TEXT,
    expiration_date     TEXT,
    note                TEXT,
    status              TEXT    NOT NULL,
    status_reason       TEXT,
    availability_status TEXT    NOT NULL,
    is_active           BOOLEAN NOT NULL,
    inserted_at         TEXT    NOT NULL,
    inserted_by         TEXT,
    updated_at          TEXT    NOT NULL,
    updated_by          TEXT
);
CREATE INDEX equipment_by_legal_entity ON equipment (legal_entity_id, inserted_at, equipment_id);
CREATE INDEX equipment_by_division ON equipment (legal_entity_id, division_id);
CREATE INDEX equipment_by_external_id ON equipment (legal_entity_id, external_id);

-- Every link an equipment had: the current one ACTIVE, the closed ones INACTIVE.
CREATE TABLE equipment_division_links (
    link_id      TEXT PRIMARY KEY,
    equipment_id TEXT NOT NULL,
    division_id  TEXT NOT NULL,
    status       TEXT NOT NULL,
    inserted_at  TEXT NOT NULL,
    inserted_by  TEXT,
    updated_at   TEXT NOT NULL,
    updated_by   TEXT
);
CREATE INDEX equipment_division_links_by_equipment ON equipment_division_links (equipment_id, inserted_at);
CREATE INDEX equipment_division_links_by_division ON equipment_division_links (division_id, status);

-- Every status an equipment had, from its registration (ACTIVE) on.
CREATE TABLE equipment_status_history (
    equipment_id TEXT   NOT NULL,
    position     BIGINT NOT NULL,
    status       TEXT   NOT NULL,
    reason       TEXT,
    inserted_at  TEXT   NOT NULL,
    inserted_by  TEXT,
    PRIMARY KEY (equipment_id, position)
);
