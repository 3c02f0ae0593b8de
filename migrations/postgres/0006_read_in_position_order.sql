-- Reading the log in position order, by a plan that reads only the page asked for.
--
-- `position > after ... ORDER BY position LIMIT n` should walk the primary key and stop after n
-- rows. Right after a bulk of appends, before autovacuum has analysed `events`, the planner
-- underestimates the rows past `after` and picks a bitmap scan of ALL of them plus a sort, so
-- each page costs as much as the rest of the log (measured: 230 ms per page of 1,000 with 100,000
-- events left; catch-up became quadratic). These functions pin the plan to the index walk:
-- bitmap scans and sorts are off inside them only.
CREATE FUNCTION careledger_read_all(after BIGINT, max_rows INTEGER, horizon BIGINT)
RETURNS TABLE ("position" BIGINT, event_id UUID, stream TEXT, version BIGINT, event_type TEXT,
               data TEXT, metadata TEXT, recorded_at TIMESTAMPTZ)
LANGUAGE sql STABLE
SET enable_bitmapscan = off SET enable_sort = off SET enable_seqscan = off
AS $$
    SELECT e.position, e.event_id, e.stream, e.version, e.event_type, e.data::text, e.metadata::text,
           e.recorded_at
    FROM events e
    WHERE e.position > after AND e.position < (horizon << 20) AND e.transaction_id < horizon::text::xid8
    ORDER BY e.position
    LIMIT max_rows
$$;

CREATE FUNCTION careledger_head(horizon BIGINT)
RETURNS BIGINT
LANGUAGE sql STABLE
SET enable_bitmapscan = off SET enable_sort = off SET enable_seqscan = off
AS $$
    SELECT e.position FROM events e
    WHERE e.position < (horizon << 20) AND e.transaction_id < horizon::text::xid8
    ORDER BY e.position DESC
    LIMIT 1
$$;
