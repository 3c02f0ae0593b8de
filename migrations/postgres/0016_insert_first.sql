-- Appends insert first and ask later. 0013's `careledger_write_append` wrote a new stream's row,
-- the keys claimed and the idempotency record with INSERT .. ON CONFLICT DO NOTHING, then looked
-- at what was refused. ON CONFLICT makes PostgreSQL probe every unique index before a speculative
-- insert and confirm after it: perf put that probe (ExecCheckIndexConstraints) at 5.4% of
-- PostgreSQL's CPU on the requisitions benchmark, for conflicts that almost never happen. Now each
-- append is first written with plain INSERTs (`careful` false). If one of them meets a row there
-- already (unique_violation), the append's subtransaction is rolled back and the append is written
-- again with `careful` true, 0013's statements: that is where a refusal of its stream or keys gets
-- its answer (and where a key its own owner holds already is accepted). An idempotency key taken
-- needs no second try: its unique_violation is the refusal (CL003). The answers are the same as
-- before; only a refused append costs one more try.
DROP FUNCTION careledger_write_append(JSONB, xid8, BIGINT, TIMESTAMPTZ);

-- One append, refused by raising CL001 (expected version), CL002 (keys taken) or unique_violation
-- (event id or idempotency key; with `careful` false, also a stream or key there already). Its
-- events take the positions from `first_position` on.
CREATE FUNCTION careledger_write_append(
    req JSONB, me xid8, first_position BIGINT, now TIMESTAMPTZ, careful BOOLEAN,
    OUT versions BIGINT[], OUT event_count INTEGER
) LANGUAGE plpgsql AS $$
DECLARE
    streams JSONB := req->'streams';
    claims JSONB := req->'claims';
    st JSONB;
    evs JSONB;
    ev JSONB;
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
    FOR i IN 0 .. coalesce(jsonb_array_length(streams), 0) - 1 LOOP
        st := streams->i;
        name := st->>'stream';
        expected := (st->>'expected')::bigint;
        evs := st->'events';
        n := jsonb_array_length(evs);
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
        ELSIF expected = 0 AND NOT careful THEN
            INSERT INTO streams AS s (stream, version, last_transaction_id) VALUES (name, n, me)
                RETURNING s.version INTO next_version;
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
        IF n = 1 THEN
            ev := evs->0;
            INSERT INTO events (position, transaction_id, event_id, stream, version, event_type, data, metadata,
                                recorded_at)
            VALUES (first_position + event_count, me, (ev->>'id')::uuid, name, next_version, ev->>'type',
                    ev->'data', ev->'metadata', now);
        ELSIF n > 1 THEN
            INSERT INTO events (position, transaction_id, event_id, stream, version, event_type, data, metadata,
                                recorded_at)
            SELECT first_position + event_count + e.o - 1, me, (e.ev->>'id')::uuid, name,
                   next_version - n + e.o, e.ev->>'type', e.ev->'data', e.ev->'metadata', now
            FROM jsonb_array_elements(evs) WITH ORDINALITY AS e(ev, o);
        END IF;
        event_count := event_count + n;
    END LOOP;
    FOR i IN 0 .. coalesce(jsonb_array_length(claims), 0) - 1 LOOP
        cl := claims->i;
        keys := ARRAY(SELECT jsonb_array_elements_text(cl->'keys'));
        IF NOT careful THEN
            INSERT INTO unique_keys (scope, key, owner)
                SELECT cl->>'scope', k, cl->>'owner' FROM unnest(keys) AS u(k) ORDER BY k;
            CONTINUE;
        END IF;
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
    -- taken already: unique_violation, which the caller answers as CL003 (ON CONFLICT would
    -- only tell the same thing later)
    IF jsonb_typeof(req->'idempotency') = 'object' THEN
        INSERT INTO idempotency_keys (key, request_hash, status, body, position, recorded_at)
            VALUES (req->'idempotency'->>'key', req->'idempotency'->>'hash',
                    (req->'idempotency'->>'status')::integer, req->'idempotency'->>'body',
                    CASE WHEN event_count > 0 THEN first_position + event_count - 1 ELSE 0 END, now);
    END IF;
END
$$;

-- A batch of appends in one transaction, each in its own subtransaction (see 0003), each tried
-- without care first.
CREATE OR REPLACE FUNCTION careledger_append(reqs JSONB, now TIMESTAMPTZ)
RETURNS TABLE (txid BIGINT, first_index INTEGER, versions BIGINT[], refusal TEXT, detail TEXT)
LANGUAGE plpgsql AS $$
DECLARE
    me xid8;
    base BIGINT;
    one RECORD;
    next_index INTEGER := 0;
    constraint_name TEXT;
BEGIN
    -- the appender lock first, then the transaction id: readers' horizon relies on that order
    PERFORM pg_advisory_xact_lock_shared(1128354373, 1);
    me := pg_current_xact_id();
    txid := me::text::bigint;
    base := txid << 20;
    FOR r IN 0 .. jsonb_array_length(reqs) - 1 LOOP
        first_index := next_index;
        versions := NULL;
        refusal := NULL;
        detail := NULL;
        FOR attempt IN 1 .. 2 LOOP
            BEGIN -- a subtransaction: a refused append takes nothing of the others with it
                one := careledger_write_append(reqs->r, me, base | next_index, now, attempt = 2);
                versions := one.versions;
                next_index := next_index + one.event_count;
                EXIT;
            EXCEPTION
                WHEN SQLSTATE 'CL001' OR SQLSTATE 'CL002' THEN
                    refusal := SQLSTATE;
                    detail := SQLERRM;
                    EXIT;
                WHEN unique_violation THEN
                    GET STACKED DIAGNOSTICS constraint_name = CONSTRAINT_NAME;
                    IF constraint_name = 'events_event_id_key' THEN
                        refusal := SQLSTATE;
                        detail := constraint_name;
                        EXIT;
                    END IF;
                    IF constraint_name = 'idempotency_keys_pkey' THEN
                        refusal := 'CL003';
                        detail := json_build_object('key', reqs->r->'idempotency'->>'key')::text;
                        EXIT;
                    END IF;
                    IF attempt = 2 THEN
                        RAISE;
                    END IF;
                    -- a stream, key or idempotency key there already: again, with care, to tell
            END;
        END LOOP;
        RETURN NEXT;
    END LOOP;
END
$$;
