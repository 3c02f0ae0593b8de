-- Changes a sync did not take as sent (issue #21): one row per claims' `ConflictRecorded`, listed
-- by GET /api/v1/sync/conflicts in log order. `data` is the change's claim data (JSON), kept whole.
CREATE TABLE sync_conflicts (
    position BIGINT PRIMARY KEY,
    resource_type TEXT NOT NULL,
    local_id TEXT NOT NULL,
    peer TEXT NOT NULL,
    rule TEXT NOT NULL,
    status BIGINT NOT NULL,
    code TEXT NOT NULL,
    health_facility TEXT NOT NULL,
    data TEXT NOT NULL,
    recorded_at TEXT NOT NULL
);
CREATE INDEX sync_conflicts_by_peer ON sync_conflicts (peer, position);
