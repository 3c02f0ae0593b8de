-- Group commit (see store/src/group_commit.rs): `careledger_append` now takes a batch of
-- independent appends, written in one transaction, each in its own subtransaction. It replaces the
-- single-append function of 0001, whose arrays-per-column form could not carry several appends.
DROP FUNCTION careledger_append(
    TEXT[], BIGINT[], INTEGER[], UUID[], TEXT[], TEXT[], TEXT[], TEXT[], TEXT[], INTEGER[], TEXT[],
    TEXT, TEXT, INTEGER, TEXT, TIMESTAMPTZ
);

-- Appends are written by `careledger_append`: a batch of independent appends in one statement and
-- one transaction (group commit: the store gathers the appends of concurrent writers and pays one
-- commit for all of them). Each append runs in its own subtransaction, so one refused append takes
-- nothing of the others with it. An append is JSON:
--   {"streams": [{"stream": "...", "expected": -1 (any) | 0 (new) | N, "events":
--                 [{"id": uuid, "type": "...", "data": {...}, "metadata": {...}}]}],
--    "claims": [{"scope": "...", "owner": "...", "keys": ["..."]}],
--    "idempotency": null | {"key": "...", "hash": "...", "status": 201, "body": "..."}}
-- One row per append, in order: the transaction id and the index of its first event (positions are
-- `txid << 20 | index`) and each stream's new version; or the refusal and its JSON detail:
--   CL001 wrong expected version {stream, expected, actual}
--   CL002 keys taken {scope, keys}
--   CL003 idempotency key taken {key}
--   23505 an event id already in the log.
CREATE FUNCTION careledger_append_one(
    req JSONB, me xid8, first_index INTEGER, now TIMESTAMPTZ, OUT versions BIGINT[], OUT event_count INTEGER
) LANGUAGE plpgsql AS $$
DECLARE
    st JSONB;
    cl JSONB;
    name TEXT;
    expected BIGINT;
    n INTEGER;
    next_version BIGINT;
    actual BIGINT;
    keys TEXT[];
    inserted BIGINT;
    taken TEXT[];
BEGIN
    versions := '{}';
    event_count := 0;
    FOR st IN SELECT value FROM jsonb_array_elements(req->'streams') WITH ORDINALITY ORDER BY ordinality LOOP
        name := st->>'stream';
        expected := (st->>'expected')::bigint;
        n := jsonb_array_length(st->'events');
        next_version := NULL;
        IF n = 0 THEN
            SELECT s.version INTO next_version FROM streams s WHERE s.stream = name;
            next_version := coalesce(next_version, 0);
        ELSIF expected = 0 THEN
            INSERT INTO streams AS s (stream, version, last_transaction_id) VALUES (name, n, me)
                ON CONFLICT DO NOTHING RETURNING s.version INTO next_version;
        ELSIF expected > 0 THEN
            UPDATE streams s SET version = s.version + n, last_transaction_id = me
                WHERE s.stream = name AND s.version = expected AND s.last_transaction_id <= me
                RETURNING s.version INTO next_version;
        ELSE
            INSERT INTO streams AS s (stream, version, last_transaction_id) VALUES (name, n, me)
                ON CONFLICT (stream) DO UPDATE SET version = s.version + n, last_transaction_id = me
                WHERE s.last_transaction_id <= me
                RETURNING s.version INTO next_version;
        END IF;
        IF next_version IS NULL THEN
            SELECT s.version INTO actual FROM streams s WHERE s.stream = name;
            actual := coalesce(actual, 0);
            RAISE EXCEPTION USING ERRCODE = 'CL001', MESSAGE = json_build_object(
                'stream', name, 'expected', CASE WHEN expected < 0 THEN actual ELSE expected END,
                'actual', actual)::text;
        END IF;
        versions := versions || next_version;
        IF n > 0 THEN
            INSERT INTO events (position, transaction_id, event_id, stream, version, event_type, data, metadata,
                                recorded_at)
            SELECT (me::text::bigint << 20) | (first_index + event_count + e.o - 1), me, (e.ev->>'id')::uuid, name,
                   next_version - n + e.o, e.ev->>'type', e.ev->'data', e.ev->'metadata', now
            FROM jsonb_array_elements(st->'events') WITH ORDINALITY AS e(ev, o);
            event_count := event_count + n;
        END IF;
    END LOOP;
    FOR cl IN SELECT value FROM jsonb_array_elements(coalesce(req->'claims', '[]')) LOOP
        keys := ARRAY(SELECT jsonb_array_elements_text(cl->'keys'));
        INSERT INTO unique_keys (scope, key, owner)
            SELECT cl->>'scope', k, cl->>'owner' FROM unnest(keys) AS u(k) ORDER BY k
            ON CONFLICT DO NOTHING;
        GET DIAGNOSTICS inserted = ROW_COUNT;
        IF inserted < coalesce(array_length(keys, 1), 0) THEN
            SELECT array_agg(u.key ORDER BY u.key) INTO taken FROM unique_keys u
                WHERE u.scope = cl->>'scope' AND u.key = ANY(keys) AND u.owner <> cl->>'owner';
            IF taken IS NOT NULL THEN
                RAISE EXCEPTION USING ERRCODE = 'CL002',
                    MESSAGE = json_build_object('scope', cl->>'scope', 'keys', taken)::text;
            END IF;
        END IF;
    END LOOP;
    IF jsonb_typeof(req->'idempotency') = 'object' THEN
        INSERT INTO idempotency_keys (key, request_hash, status, body, position, recorded_at)
            VALUES (req->'idempotency'->>'key', req->'idempotency'->>'hash',
                    (req->'idempotency'->>'status')::integer, req->'idempotency'->>'body',
                    CASE WHEN event_count > 0 THEN (me::text::bigint << 20) | (first_index + event_count - 1)
                         ELSE 0 END, now)
            ON CONFLICT DO NOTHING;
        GET DIAGNOSTICS inserted = ROW_COUNT;
        IF inserted = 0 THEN
            RAISE EXCEPTION USING ERRCODE = 'CL003',
                MESSAGE = json_build_object('key', req->'idempotency'->>'key')::text;
        END IF;
    END IF;
END
$$;

CREATE FUNCTION careledger_append(reqs JSONB, now TIMESTAMPTZ)
RETURNS TABLE (txid BIGINT, first_index INTEGER, versions BIGINT[], refusal TEXT, detail TEXT)
LANGUAGE plpgsql AS $$
DECLARE
    me xid8;
    req JSONB;
    one RECORD;
    next_index INTEGER := 0;
    constraint_name TEXT;
BEGIN
    -- the appender lock first, then the transaction id: readers' horizon relies on that order
    PERFORM pg_advisory_xact_lock_shared(1128354373, 1);
    me := pg_current_xact_id();
    FOR req IN SELECT value FROM jsonb_array_elements(reqs) WITH ORDINALITY ORDER BY ordinality LOOP
        txid := me::text::bigint;
        first_index := next_index;
        versions := NULL;
        refusal := NULL;
        detail := NULL;
        BEGIN
            SELECT * INTO one FROM careledger_append_one(req, me, next_index, now);
            versions := one.versions;
            next_index := next_index + one.event_count;
        EXCEPTION
            WHEN SQLSTATE 'CL001' OR SQLSTATE 'CL002' OR SQLSTATE 'CL003' THEN
                refusal := SQLSTATE;
                detail := SQLERRM;
            WHEN unique_violation THEN
                GET STACKED DIAGNOSTICS constraint_name = CONSTRAINT_NAME;
                IF constraint_name <> 'events_event_id_key' THEN
                    RAISE;
                END IF;
                refusal := SQLSTATE;
                detail := constraint_name;
        END;
        RETURN NEXT;
    END LOOP;
END
$$;
