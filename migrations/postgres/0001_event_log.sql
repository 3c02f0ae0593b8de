-- The event log (PostgreSQL).
--
-- No reader may skip an event (DESIGN rule 2). A sequence is not enough: a transaction can take
-- position 5, another take 6 and commit first, and a reader at 6 would never see 5. Here the
-- position is made from the writing transaction's id (`txid << 20 | index in the append`), and
-- readers only read events of transactions below a horizon: the oldest id of an appender still
-- running, or the next id when none runs (see `HORIZON` in store/src/postgres.rs; appenders hold a
-- shared advisory lock, taken before their id exists, so readers can tell them from other
-- transactions). Every event a reader may still see later belongs to a transaction at or above that
-- horizon, so it has a higher position than anything already read. Positions are increasing in
-- reading order but not dense.
CREATE TABLE events (
    position       BIGINT      PRIMARY KEY,
    transaction_id xid8        NOT NULL DEFAULT pg_current_xact_id(),
    event_id       UUID        NOT NULL UNIQUE,
    stream         TEXT        NOT NULL,
    version        BIGINT      NOT NULL,
    event_type     TEXT        NOT NULL,
    data           JSONB       NOT NULL,
    metadata       JSONB       NOT NULL,
    recorded_at    TIMESTAMPTZ NOT NULL,
    UNIQUE (stream, version)
);

-- One row per stream: its version (optimistic concurrency) and the last transaction that wrote
-- it. An append whose transaction is older than that is refused as a conflict, so the order of a
-- stream's events in the global log is always their version order.
CREATE TABLE streams (
    stream              TEXT   PRIMARY KEY,
    version             BIGINT NOT NULL,
    last_transaction_id xid8   NOT NULL
);

CREATE TABLE unique_keys (
    scope TEXT NOT NULL,
    key   TEXT NOT NULL,
    owner TEXT NOT NULL,
    PRIMARY KEY (scope, key)
);

CREATE TABLE idempotency_keys (
    key          TEXT        PRIMARY KEY,
    request_hash TEXT        NOT NULL,
    status       INTEGER     NOT NULL,
    body         TEXT        NOT NULL,
    position     BIGINT      NOT NULL,
    recorded_at  TIMESTAMPTZ NOT NULL
);

CREATE TABLE checkpoints (
    name       TEXT        PRIMARY KEY,
    position   BIGINT      NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);

-- One append in one statement (one round trip): expected versions, events, set-invariant keys and
-- the idempotency record, all or nothing. Streams come as parallel arrays (`expected` -1 = any,
-- `counts` = how many of the flattened events belong to each stream), claims likewise (`claim_counts`
-- keys of the flattened `claim_keys` for each scope/owner). Refusals are raised with their own
-- SQLSTATEs and a JSON message the store decodes:
--   CL001 wrong expected version {stream, expected, actual}
--   CL002 keys taken {scope, keys}
--   CL003 idempotency key taken {key}
-- Returns the transaction id (positions are `txid << 20 | index`) and each stream's new version.
CREATE FUNCTION careledger_append(
    streams TEXT[], expected BIGINT[], counts INTEGER[],
    event_ids UUID[], event_types TEXT[], event_data TEXT[], event_metadata TEXT[],
    claim_scopes TEXT[], claim_owners TEXT[], claim_counts INTEGER[], claim_keys TEXT[],
    idem_key TEXT, idem_hash TEXT, idem_status INTEGER, idem_body TEXT,
    now TIMESTAMPTZ,
    OUT txid BIGINT, OUT versions BIGINT[]
) LANGUAGE plpgsql AS $$
DECLARE
    me xid8;
    n INTEGER;
    next_version BIGINT;
    actual BIGINT;
    offs INTEGER := 0;
    stream_col TEXT[] := '{}';
    version_col BIGINT[] := '{}';
    keys TEXT[];
    inserted BIGINT;
    taken TEXT[];
BEGIN
    -- the appender lock first, then the transaction id: readers' horizon relies on that order
    PERFORM pg_advisory_xact_lock_shared(1128354373, 1);
    me := pg_current_xact_id();
    txid := me::text::bigint;
    versions := '{}';
    FOR i IN 1 .. coalesce(array_length(streams, 1), 0) LOOP
        n := counts[i];
        IF n = 0 THEN
            SELECT s.version INTO next_version FROM streams s WHERE s.stream = streams[i];
            next_version := coalesce(next_version, 0);
        ELSIF expected[i] = 0 THEN
            INSERT INTO streams AS s (stream, version, last_transaction_id) VALUES (streams[i], n, me)
                ON CONFLICT DO NOTHING RETURNING s.version INTO next_version;
        ELSIF expected[i] > 0 THEN
            UPDATE streams s SET version = s.version + n, last_transaction_id = me
                WHERE s.stream = streams[i] AND s.version = expected[i] AND s.last_transaction_id <= me
                RETURNING s.version INTO next_version;
        ELSE
            INSERT INTO streams AS s (stream, version, last_transaction_id) VALUES (streams[i], n, me)
                ON CONFLICT (stream) DO UPDATE SET version = s.version + n, last_transaction_id = me
                WHERE s.last_transaction_id <= me
                RETURNING s.version INTO next_version;
        END IF;
        IF next_version IS NULL THEN
            SELECT s.version INTO actual FROM streams s WHERE s.stream = streams[i];
            actual := coalesce(actual, 0);
            RAISE EXCEPTION USING ERRCODE = 'CL001', MESSAGE = json_build_object(
                'stream', streams[i], 'expected', CASE WHEN expected[i] < 0 THEN actual ELSE expected[i] END,
                'actual', actual)::text;
        END IF;
        versions := versions || next_version;
        stream_col := stream_col || array_fill(streams[i], ARRAY[n]);
        version_col := version_col || ARRAY(SELECT generate_series(next_version - n + 1, next_version));
        next_version := NULL;
    END LOOP;
    IF coalesce(array_length(event_ids, 1), 0) > 0 THEN
        INSERT INTO events (position, transaction_id, event_id, stream, version, event_type, data, metadata, recorded_at)
        SELECT (txid << 20) | (e.o - 1), me, e.i, e.s, e.v, e.t, e.d::jsonb, e.m::jsonb, now
        FROM unnest(event_ids, stream_col, version_col, event_types, event_data, event_metadata)
             WITH ORDINALITY AS e(i, s, v, t, d, m, o);
    END IF;
    FOR c IN 1 .. coalesce(array_length(claim_scopes, 1), 0) LOOP
        keys := claim_keys[offs + 1 : offs + claim_counts[c]];
        offs := offs + claim_counts[c];
        INSERT INTO unique_keys (scope, key, owner)
            SELECT claim_scopes[c], k, claim_owners[c] FROM unnest(keys) AS u(k) ORDER BY k
            ON CONFLICT DO NOTHING;
        GET DIAGNOSTICS inserted = ROW_COUNT;
        IF inserted < claim_counts[c] THEN
            SELECT array_agg(u.key ORDER BY u.key) INTO taken FROM unique_keys u
                WHERE u.scope = claim_scopes[c] AND u.key = ANY(keys) AND u.owner <> claim_owners[c];
            IF taken IS NOT NULL THEN
                RAISE EXCEPTION USING ERRCODE = 'CL002',
                    MESSAGE = json_build_object('scope', claim_scopes[c], 'keys', taken)::text;
            END IF;
        END IF;
    END LOOP;
    IF idem_key IS NOT NULL THEN
        INSERT INTO idempotency_keys (key, request_hash, status, body, position, recorded_at)
            VALUES (idem_key, idem_hash, idem_status, idem_body,
                    CASE WHEN coalesce(array_length(event_ids, 1), 0) > 0
                         THEN (txid << 20) | (array_length(event_ids, 1) - 1) ELSE 0 END, now)
            ON CONFLICT DO NOTHING;
        GET DIAGNOSTICS inserted = ROW_COUNT;
        IF inserted = 0 THEN
            RAISE EXCEPTION USING ERRCODE = 'CL003', MESSAGE = json_build_object('key', idem_key)::text;
        END IF;
    END IF;
END
$$;
