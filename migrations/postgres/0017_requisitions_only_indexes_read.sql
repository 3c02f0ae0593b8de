-- The requisitions read model keeps only the indexes its queries read (`GET /api/v1/requisitions/
-- {requisition}`: both tables by requisition). The UNIQUE on `requisitions.encounter_id` and the
-- index of entities by (entity_type, entity_id) were read by nothing, yet every number issued paid
-- for both: perf puts one index entry at about 0.75% of the whole machine's CPU on the
-- requisitions benchmark (17 entries per number before this, 15 after). One number per encounter
-- is the log's rule (the encounter's stream, expected version 0, and the `requisition` key in
-- `unique_keys`), not this disposable table's.
ALTER TABLE requisitions DROP CONSTRAINT requisitions_encounter_id_key;
DROP INDEX requisition_entities_by_entity;
