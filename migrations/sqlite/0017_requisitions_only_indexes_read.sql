-- The requisitions read model keeps only the indexes its queries read (see the PostgreSQL
-- migration of the same number for why). SQLite cannot drop a column's UNIQUE, so the table is
-- made again without it.
CREATE TABLE requisitions_new (
    requisition     TEXT   PRIMARY KEY,
    encounter_id    TEXT   NOT NULL,
    salt            TEXT   NOT NULL,
    issued_at       TEXT   NOT NULL,
    issued_position BIGINT NOT NULL,
    issued_by       TEXT,
    issued_for      TEXT,
    correlation_id  TEXT   NOT NULL
);
INSERT INTO requisitions_new SELECT requisition, encounter_id, salt, issued_at, issued_position, issued_by,
                                    issued_for, correlation_id FROM requisitions;
DROP TABLE requisitions;
ALTER TABLE requisitions_new RENAME TO requisitions;
DROP INDEX requisition_entities_by_entity;
