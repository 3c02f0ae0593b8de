-- The reading horizon as a function, and the log's reads that take it themselves: one round trip
-- per read of the tail instead of two (the horizon, then the read).
--
-- Why a read is still never ahead of its horizon: the functions are VOLATILE plpgsql, and in
-- READ COMMITTED each statement of a VOLATILE function takes a fresh snapshot. The horizon is read
-- by one statement and the events by a later one, exactly as the two round trips did (see 0001
-- and `store/src/postgres.rs`). Under REPEATABLE READ or SERIALIZABLE both statements would share
-- the transaction's snapshot and a commit between them could be missed, so `careledger_horizon`
-- refuses to run there (the store's connections pin READ COMMITTED).
--
-- The horizon: the lowest transaction id of an appender of this database still running (an
-- appender holds advisory lock (1128354373, 1, 2) while it writes), or the next transaction id when
-- none runs. `backend_xid` is 32 bits: it is widened to 64 as the id nearest the snapshot's xmax
-- (running ids are within 2^31 of it).
-- plpgsql, not SQL: PostgreSQL plans a SQL function's query again on every call it cannot inline
-- (this one joins two system views: ~1.2 ms a plan, measured with pg_stat_statements), while
-- plpgsql keeps the plan for the session.
CREATE FUNCTION careledger_horizon()
RETURNS BIGINT
LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'reading the log needs READ COMMITTED (the horizon, then the events, each with its own snapshot)';
    END IF;
    RETURN (
        WITH s AS (SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS n)
        SELECT LEAST(s.n, COALESCE((
            SELECT min(s.n + (((a.backend_xid::text::bigint - (s.n & 4294967295)) % 4294967296
                                     + 6442450944) % 4294967296 - 2147483648))
            FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
            WHERE l.locktype = 'advisory' AND l.granted
              AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
              AND l.classid = 1128354373::oid AND l.objid = 1::oid AND l.objsubid = 2
              AND a.backend_xid IS NOT NULL), s.n))
        FROM s);
END
$$;

-- The events after `after`, `max_rows` at most, below the horizon read first.
CREATE FUNCTION careledger_read_after(after BIGINT, max_rows INTEGER)
RETURNS TABLE ("position" BIGINT, event_id UUID, stream TEXT, version BIGINT, event_type TEXT,
               data TEXT, metadata TEXT, recorded_at TIMESTAMPTZ)
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    horizon BIGINT;
BEGIN
    horizon := careledger_horizon();  -- its own statement: the read below takes a later snapshot
    RETURN QUERY SELECT * FROM careledger_read_all(after, max_rows, horizon);
END
$$;

-- The position of the last event below the horizon read first (NULL: none).
CREATE FUNCTION careledger_head_now()
RETURNS BIGINT
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    horizon BIGINT;
BEGIN
    horizon := careledger_horizon();  -- its own statement, as above
    RETURN careledger_head(horizon);
END
$$;
