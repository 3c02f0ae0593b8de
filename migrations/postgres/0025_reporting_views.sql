-- Reporting views (issue #20): a small, stable contract over the read models for BI tools
-- (Grafana, Metabase, Power BI, a spreadsheet). Columns are only ever added to these views; a
-- change that would rename or drop one is a new view. Amounts are in currency units
-- (numeric(18,2)), statuses by openIMIS' names beside their numbers, dates as dates. README's
-- "Reporting views" lists them.
--
-- The role careledger_reporting may read these views and nothing else: not the event log, not the
-- read models' tables (a view reads its tables with its owner's rights). A BI tool logs in as a
-- role of its own, made a member:  CREATE ROLE bi LOGIN PASSWORD '...' IN ROLE careledger_reporting;
-- Roles belong to the cluster: when the service's user may not create roles, the migration says so
-- (a NOTICE) and goes on, and an administrator runs the CREATE ROLE and GRANTs at the end by hand
-- (the ALTER DEFAULT PRIVILEGES with FOR ROLE <the service's user>, who makes later views).
--
-- A later migration that changes a column these views read must drop and recreate them.

CREATE SCHEMA IF NOT EXISTS reporting;

-- A claim's dates are written as entered (YYYY-MM-DD, any year from 0000 to 9999 chrono takes):
-- year 0000, which PostgreSQL's date does not hold, must not make every query of a view fail, so
-- it is NULL; years 0001 to 9999 are dates.
CREATE FUNCTION reporting.date_or_null(text) RETURNS date LANGUAGE sql STABLE AS
$$ SELECT CASE WHEN $1 ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}$' AND $1 !~ '^0000' THEN $1::date END $$;

CREATE VIEW reporting.claims AS
SELECT c.claim_id AS claim_uuid,
       c.code,
       c.health_facility,
       f.name AS health_facility_name,
       c.insuree,
       reporting.date_or_null(c.date_from) AS date_from,
       reporting.date_or_null(COALESCE(c.date_to, c.date_from)) AS date_to,
       reporting.date_or_null(c.date_claimed) AS date_claimed,
       date_trunc('month', reporting.date_or_null(c.date_claimed))::date AS month_claimed,
       c.visit_type,
       c.care_type,
       c.category,
       c.status AS status_code,
       CASE c.status WHEN 1 THEN 'REJECTED' WHEN 2 THEN 'ENTERED' WHEN 4 THEN 'CHECKED'
                     WHEN 8 THEN 'PROCESSED' WHEN 16 THEN 'VALUATED' END AS status,
       c.feedback_status AS feedback_status_code,
       c.review_status AS review_status_code,
       c.rejection_reason,
       (c.claimed / 100.0)::numeric(18, 2) AS claimed,
       (c.adjusted / 100.0)::numeric(18, 2) AS adjusted,
       (c.approved / 100.0)::numeric(18, 2) AS approved,
       (c.valuated / 100.0)::numeric(18, 2) AS valuated,
       (c.remunerated / 100.0)::numeric(18, 2) AS remunerated,
       c.submitted_at::timestamptz AS submitted_at,
       c.processed_at::timestamptz AS processed_at
FROM claims c
LEFT JOIN claims_health_facilities f ON f.code = c.health_facility;

CREATE VIEW reporting.claim_lines AS
SELECT l.claim_id AS claim_uuid,
       c.health_facility,
       date_trunc('month', reporting.date_or_null(c.date_claimed))::date AS month_claimed,
       l.kind,
       l.line_index,
       l.code,
       (l.qty_provided / 100.0)::numeric(18, 2) AS qty_provided,
       (l.price_asked / 100.0)::numeric(18, 2) AS price_asked,
       CASE l.status WHEN 1 THEN 'PASSED' WHEN 2 THEN 'REJECTED' END AS status,
       l.rejection_reason,
       (l.qty_approved / 100.0)::numeric(18, 2) AS qty_approved,
       (l.price_approved / 100.0)::numeric(18, 2) AS price_approved,
       (l.price_valuated / 100.0)::numeric(18, 2) AS price_valuated,
       l.product
FROM claim_lines l
JOIN claims c ON c.claim_id = l.claim_id;

-- counts and amounts per facility, month claimed and status: the dashboard's claims figures
CREATE VIEW reporting.claims_by_facility_month AS
SELECT health_facility, month_claimed, status_code, status,
       count(*) AS claims,
       COALESCE(sum(claimed), 0)::numeric(18, 2) AS claimed,
       COALESCE(sum(adjusted), 0)::numeric(18, 2) AS adjusted,
       COALESCE(sum(approved), 0)::numeric(18, 2) AS approved,
       COALESCE(sum(valuated), 0)::numeric(18, 2) AS valuated,
       COALESCE(sum(remunerated), 0)::numeric(18, 2) AS remunerated
FROM reporting.claims
GROUP BY health_facility, month_claimed, status_code, status;

-- how often each rejection reason was met, on claims and on their lines
CREATE VIEW reporting.rejection_reasons AS
SELECT 'claim' AS level, rejection_reason, count(*) AS occurrences
FROM claims WHERE rejection_reason IS NOT NULL AND rejection_reason <> 0 GROUP BY rejection_reason
UNION ALL
SELECT 'line' AS level, rejection_reason, count(*) AS occurrences
FROM claim_lines WHERE rejection_reason IS NOT NULL AND rejection_reason <> 0 GROUP BY rejection_reason;

CREATE VIEW reporting.code_batches AS
SELECT batch_id,
       holder_type AS holder_type_code,
       CASE holder_type WHEN 1 THEN 'printer' WHEN 2 THEN 'enrolment_officer'
                        WHEN 3 THEN 'health_facility' WHEN 4 THEN 'location' END AS holder_type,
       holder_code, number, available, reserved, assigned,
       created_at::timestamptz AS created_at
FROM code_batches;

-- per holder: what it has left to hand out (available and reserved) and what it assigned
CREATE VIEW reporting.code_holders AS
SELECT holder_type_code, holder_type, holder_code,
       count(*) AS batches,
       sum(number) AS issued, sum(available) AS available, sum(reserved) AS reserved, sum(assigned) AS assigned
FROM reporting.code_batches
GROUP BY holder_type_code, holder_type, holder_code;

CREATE VIEW reporting.equipment AS
SELECT e.equipment_id, e.legal_entity_id, le.name AS legal_entity_name, e.division_id,
       d.name AS division_name, e.type, e.status, e.availability_status, e.is_active,
       e.inserted_at::timestamptz AS inserted_at
FROM equipment e
LEFT JOIN legal_entities le ON le.legal_entity_id = e.legal_entity_id
LEFT JOIN divisions d ON d.division_id = e.division_id;

CREATE VIEW reporting.equipment_counts AS
SELECT legal_entity_id, legal_entity_name, division_id, division_name, status, availability_status,
       count(*) AS equipment
FROM reporting.equipment
GROUP BY legal_entity_id, legal_entity_name, division_id, division_name, status, availability_status;

CREATE VIEW reporting.requisitions_per_day AS
SELECT (issued_at::timestamptz AT TIME ZONE 'UTC')::date AS day, count(*) AS issued
FROM requisitions
GROUP BY 1;

-- each read model's stored position in the log and how many events come after it (positions are
-- not dense on PostgreSQL: the lag is counted, not subtracted, and counted up to a million so that
-- a dashboard's refresh never reads a whole log). A read model moving only past events it does
-- not take stores its position after a quiet second; the relay's row is the events not yet
-- published to NATS.
CREATE VIEW reporting.projectors AS
SELECT c.name AS projector, c.position,
       (SELECT count(*) FROM (SELECT 1 FROM events e WHERE e.position > c.position LIMIT 1000000) behind)
           AS events_behind,
       c.updated_at, c.failures, c.last_error
FROM checkpoints c;

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'careledger_reporting') THEN
        BEGIN
            CREATE ROLE careledger_reporting NOLOGIN;
        EXCEPTION WHEN OTHERS THEN
            -- no CREATEROLE right, or another database of the cluster made it at the same moment
            RAISE NOTICE 'careledger_reporting was not created here: %', SQLERRM;
        END;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'careledger_reporting') THEN
        GRANT USAGE ON SCHEMA reporting TO careledger_reporting;
        GRANT SELECT ON ALL TABLES IN SCHEMA reporting TO careledger_reporting;
        GRANT EXECUTE ON FUNCTION reporting.date_or_null(text) TO careledger_reporting;
        -- a view a later migration makes (or drops and makes again) as this user is readable too
        EXECUTE format('ALTER DEFAULT PRIVILEGES FOR ROLE %I IN SCHEMA reporting GRANT SELECT ON TABLES TO careledger_reporting', current_user);
    END IF;
END
$$;
