-- The date a policy was enrolled (issue #21): the FHIR face's Coverage carries it (careledger's
-- extension enrol-date), so that a policy enrolled on an offline node keeps its enrolment date on
-- the central server. NULL for policies upserted as reference data and for those enrolled before.
ALTER TABLE claims_policies ADD COLUMN enrol_date TEXT;
