-- The ids other servers gave insurees and policies imported from them (issue #21): shown on the
-- FHIR face with the resource (`identifiers`, a JSON array of {system, value}) and searched by
-- system (`fhir_identifiers`, one row per identifier). Not the identifier map the import decides
-- with: that is a set invariant of the store (`unique_keys`, scope `fhir-identifier`).
ALTER TABLE claims_insurees ADD COLUMN identifiers TEXT;
ALTER TABLE claims_policies ADD COLUMN identifiers TEXT;
CREATE TABLE fhir_identifiers (
    resource_type TEXT NOT NULL,
    system TEXT NOT NULL,
    value TEXT NOT NULL,
    local_id TEXT NOT NULL,
    PRIMARY KEY (resource_type, system, value)
);
CREATE INDEX fhir_identifiers_by_local ON fhir_identifiers (resource_type, system, local_id);
