-- Read models of the insuree code pool. Disposable: `careledger projections rebuild codes` empties
-- them and replays the log. Times are RFC 3339 UTC text so both backends dump identically.

-- One row per batch with its counters (getInsuranceCodesBatch) and who generated it, which is
-- the first entry of every one of its codes' history.
CREATE TABLE code_batches (
    batch_id           TEXT    PRIMARY KEY,
    holder_type        INTEGER NOT NULL,
    holder_code        TEXT    NOT NULL,
    number             INTEGER NOT NULL,
    created_at         TEXT    NOT NULL,
    available          INTEGER NOT NULL,
    reserved           INTEGER NOT NULL,
    assigned           INTEGER NOT NULL,
    generated_position BIGINT  NOT NULL,
    generated_by       TEXT,
    generated_for      TEXT,
    correlation_id     TEXT    NOT NULL
);
CREATE INDEX code_batches_by_holder ON code_batches (holder_type, holder_code, created_at);

-- One row per code (getInsuranceCodes); `seq` is its place in the batch's generation order.
CREATE TABLE codes (
    code           TEXT    PRIMARY KEY,
    batch_id       TEXT    NOT NULL,
    seq            INTEGER NOT NULL,
    status         TEXT    NOT NULL,
    insuree_id     TEXT,
    control_number TEXT,
    json_ext       TEXT
);
CREATE INDEX codes_by_batch ON codes (batch_id, seq);

-- What happened to a code after its generation: reserved, assigned, linked to a CN.
CREATE TABLE code_history (
    code            TEXT   NOT NULL,
    position        BIGINT NOT NULL,
    event_type      TEXT   NOT NULL,
    recorded_at     TEXT   NOT NULL,
    user_id         TEXT,
    legal_entity_id TEXT,
    command         TEXT   NOT NULL,
    correlation_id  TEXT   NOT NULL,
    detail          TEXT,
    PRIMARY KEY (code, position)
);
