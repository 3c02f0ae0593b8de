-- The version of the reference data a gateway keeps in process for submissions (health
-- facilities, the medical register, price lists, products' coverage): the position of the last
-- event of those the claims projector applied, written in the transaction that applies it. A
-- submission reads it in the same statement as the insuree, and decides on a copy of the tables
-- at that version or a later one: never on data older than the read model it reads instead.
-- One row (id 1); a rebuild deletes it with the tables, and no row reads as -1 (tables empty).
CREATE TABLE claims_reference_version (
    id       INTEGER PRIMARY KEY,
    position BIGINT  NOT NULL
);

-- A database that already holds reference data: it is as of the claims checkpoint.
INSERT INTO claims_reference_version (id, position)
SELECT 1, COALESCE((SELECT position FROM checkpoints WHERE name = 'claims'), 0);
