-- An append may name a stream with no events at an exact version: a guard. The decision it
-- records was made on that stream as read (a division, a legal entity), and the append must be
-- refused if the stream moved since. 0003 only read such a stream's version; it now compares it,
-- and holds a share lock on the stream's row until the transaction ends, so a concurrent append to
-- the guarded stream (a division's deactivation) either committed before the check, and is seen,
-- or waits for this one. SQLite needs no lock: its appends take turns on one writer.
CREATE OR REPLACE FUNCTION careledger_append_one(
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
            IF expected >= 0 THEN
                SELECT s.version INTO next_version FROM streams s WHERE s.stream = name FOR SHARE;
            ELSE
                SELECT s.version INTO next_version FROM streams s WHERE s.stream = name;
            END IF;
            next_version := coalesce(next_version, 0);
            IF expected >= 0 AND next_version <> expected THEN
                next_version := NULL;
            END IF;
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
