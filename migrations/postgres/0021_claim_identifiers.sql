-- The ids other servers gave claims imported from them (issue #21), shown on the FHIR face with
-- the claim (a JSON array of {system, value}); searched through `fhir_identifiers` as insurees'.
ALTER TABLE claims ADD COLUMN identifiers TEXT;
