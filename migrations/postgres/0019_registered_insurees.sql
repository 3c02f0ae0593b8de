-- Insurees registered on this server (RegisterInsuree, the insurees context) join the register
-- claims and the FHIR face read, with what their registration says beyond the reference data an
-- integration upserts: their names, phone, family and location (NULL for upserted insurees).
ALTER TABLE claims_insurees ADD COLUMN last_name TEXT;
ALTER TABLE claims_insurees ADD COLUMN other_names TEXT;
ALTER TABLE claims_insurees ADD COLUMN phone TEXT;
ALTER TABLE claims_insurees ADD COLUMN family_head TEXT;
ALTER TABLE claims_insurees ADD COLUMN location TEXT;
