-- The claim context (openIMIS claims). Read models are disposable: `careledger projections
-- rebuild claims` empties them and replays the log. Amounts and quantities are BIGINT hundredths
-- (12.50 is 1250), times RFC 3339 UTC text, dates YYYY-MM-DD, statuses openIMIS' numbers, so
-- both backends dump identically.

-- Reference data the submission rules read, one row per entry as last upserted.
CREATE TABLE claims_health_facilities (
    code       TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    care_type  TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    updated_by TEXT
);

CREATE TABLE claims_medical_register (
    kind           TEXT    NOT NULL,
    code           TEXT    NOT NULL,
    name           TEXT    NOT NULL,
    price          BIGINT  NOT NULL,
    care_type      TEXT    NOT NULL,
    frequency_days INTEGER,
    maximum_amount BIGINT,
    category       TEXT,
    updated_at     TEXT    NOT NULL,
    updated_by     TEXT,
    PRIMARY KEY (kind, code)
);
-- a submission asks for its codes (of either kind) at once
CREATE INDEX claims_medical_register_by_code ON claims_medical_register (code);

-- A facility's price list (replaced whole by each upsert).
CREATE TABLE claims_price_lists (
    health_facility TEXT   NOT NULL,
    kind            TEXT   NOT NULL,
    code            TEXT   NOT NULL,
    valid_from      TEXT   NOT NULL,
    valid_to        TEXT,
    price           BIGINT,
    PRIMARY KEY (health_facility, kind, code, valid_from)
);

CREATE TABLE claims_insurees (
    insuree_id TEXT PRIMARY KEY,
    chfid      TEXT NOT NULL,
    birth_date TEXT NOT NULL,
    gender     TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    updated_by TEXT
);
CREATE INDEX claims_insurees_by_chfid ON claims_insurees (chfid);

CREATE TABLE claims_products (
    code       TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    updated_by TEXT
);

CREATE TABLE claims_product_coverage (
    product_code         TEXT    NOT NULL,
    kind                 TEXT    NOT NULL,
    code                 TEXT    NOT NULL,
    limit_adult          BIGINT,
    limit_child          BIGINT,
    waiting_period_adult INTEGER NOT NULL,
    waiting_period_child INTEGER NOT NULL,
    price_origin         TEXT    NOT NULL,
    PRIMARY KEY (product_code, kind, code)
);
CREATE INDEX claims_product_coverage_by_code ON claims_product_coverage (product_code, code);

CREATE TABLE claims_policies (
    policy_id      TEXT PRIMARY KEY,
    insuree_id     TEXT NOT NULL,
    product_code   TEXT NOT NULL,
    effective_date TEXT NOT NULL,
    expiry_date    TEXT NOT NULL,
    updated_at     TEXT NOT NULL,
    updated_by     TEXT
);
CREATE INDEX claims_policies_by_insuree ON claims_policies (insuree_id);

-- One row per claim (deleted claims leave), with the amount of every stage.
CREATE TABLE claims (
    claim_id         TEXT    PRIMARY KEY,
    code             TEXT    NOT NULL,
    health_facility  TEXT    NOT NULL,
    insuree          TEXT    NOT NULL,
    date_from        TEXT    NOT NULL,
    date_to          TEXT,
    target_date      TEXT    NOT NULL,
    date_claimed     TEXT    NOT NULL,
    icd              TEXT    NOT NULL,
    icd_secondary    TEXT    NOT NULL,
    visit_type       TEXT    NOT NULL,
    care_type        TEXT,
    admin            TEXT,
    explanation      TEXT,
    guarantee_id     TEXT,
    status           INTEGER NOT NULL,
    feedback_status  INTEGER NOT NULL,
    review_status    INTEGER NOT NULL,
    rejection_reason INTEGER,
    category         TEXT,
    claimed          BIGINT  NOT NULL,
    adjusted         BIGINT,
    approved         BIGINT,
    valuated         BIGINT,
    remunerated      BIGINT,
    feedback         TEXT,
    restored_from    TEXT,
    restored_as      TEXT,
    batch_run_id     TEXT,
    submitted_at     TEXT,
    processed_at     TEXT,
    inserted_at      TEXT    NOT NULL,
    inserted_by      TEXT,
    updated_at       TEXT    NOT NULL,
    updated_by       TEXT
);
CREATE INDEX claims_by_facility ON claims (health_facility, date_claimed);
CREATE INDEX claims_by_insuree ON claims (insuree, status);
CREATE INDEX claims_by_status ON claims (status, date_claimed);
CREATE INDEX claims_by_code ON claims (code);

CREATE TABLE claim_lines (
    claim_id         TEXT    NOT NULL,
    kind             TEXT    NOT NULL,
    line_index       INTEGER NOT NULL,
    code             TEXT    NOT NULL,
    qty_provided     BIGINT  NOT NULL,
    price_asked      BIGINT  NOT NULL,
    explanation      TEXT,
    status           INTEGER,
    rejection_reason INTEGER,
    qty_approved     BIGINT,
    price_adjusted   BIGINT,
    price_approved   BIGINT,
    price_valuated   BIGINT,
    justification    TEXT,
    product          TEXT,
    price_origin     TEXT,
    PRIMARY KEY (claim_id, kind, line_index)
);
CREATE INDEX claim_lines_by_product ON claim_lines (product, price_origin);

CREATE TABLE claim_attachments (
    attachment_id   TEXT PRIMARY KEY,
    claim_id        TEXT NOT NULL,
    title           TEXT NOT NULL,
    attachment_type TEXT,
    date            TEXT,
    url             TEXT,
    filename        TEXT,
    mime            TEXT,
    hash            TEXT,
    size            BIGINT,
    inserted_at     TEXT NOT NULL,
    inserted_by     TEXT,
    updated_at      TEXT NOT NULL,
    updated_by      TEXT
);
CREATE INDEX claim_attachments_by_claim ON claim_attachments (claim_id);

CREATE TABLE claim_valuation_runs (
    batch_run_id   TEXT    PRIMARY KEY,
    product        TEXT    NOT NULL,
    date_from      TEXT    NOT NULL,
    date_to        TEXT    NOT NULL,
    amount         BIGINT  NOT NULL,
    relative_total BIGINT  NOT NULL,
    claims         INTEGER NOT NULL,
    run_at         TEXT    NOT NULL,
    run_by         TEXT
);

-- Not a read model: the bytes of attached files, by their BLAKE2b-256 hash (content-addressed;
-- the events hold the hash). Written by the command before its event; never emptied by a rebuild.
CREATE TABLE claim_attachment_files (
    hash      TEXT   PRIMARY KEY,
    bytes     BLOB   NOT NULL,
    size      BIGINT NOT NULL,
    stored_at TEXT   NOT NULL
);
