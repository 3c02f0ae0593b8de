//! The audit query: events matching filters on their metadata, in log order, a page at a time.
//!
//! Only the filters given become conditions (never `$n IS NULL OR ...`, which keeps planners off
//! the indexes), so each filter's `(column, position)` index answers a page as one range walk.
//! The page's positions come from `audit_events`; the events themselves from the log.

use careledger_store::{EventStore, Exec, RecordedEvent};

use crate::ProjectionError;

/// What to look for; `None` matches everything. Times are RFC 3339 UTC text with microseconds
/// (as [`crate::time::text`] writes them): `from` inclusive, `to` exclusive, on the recorded time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Only events after this position (the previous page's last).
    pub after: i64,
    pub user_id: Option<String>,
    pub legal_entity_id: Option<String>,
    pub correlation_id: Option<String>,
    pub stream: Option<String>,
    pub context: Option<String>,
    pub event_type: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
}

impl AuditFilter {
    /// The WHERE clause and its values, `$1` being `after`.
    fn clause(&self) -> (String, Vec<String>) {
        let mut conditions = vec!["position > $1".to_string()];
        let mut values = Vec::new();
        let text_filters = [
            ("user_id = ", &self.user_id),
            ("legal_entity_id = ", &self.legal_entity_id),
            ("correlation_id = ", &self.correlation_id),
            ("stream = ", &self.stream),
            ("context = ", &self.context),
            ("event_type = ", &self.event_type),
            ("recorded_at >= ", &self.from),
            ("recorded_at < ", &self.to),
        ];
        for (condition, value) in text_filters {
            if let Some(value) = value {
                values.push(value.clone());
                conditions.push(format!("{condition}${}", values.len() + 1));
            }
        }
        (conditions.join(" AND "), values)
    }
}

/// A page of matching events, oldest first.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditPage {
    pub events: Vec<RecordedEvent>,
    /// Whether events after the page's last match too.
    pub has_more: bool,
}

/// Read access to the audit read model (and, for the events themselves, the log).
pub struct AuditQueries<'a>(pub &'a EventStore);

impl AuditQueries<'_> {
    /// At most `limit` matching events after `filter.after`.
    pub async fn page(&self, filter: &AuditFilter, limit: i64) -> Result<AuditPage, ProjectionError> {
        let (clause, values) = filter.clause();
        // one more than asked: whether there is a next page, without counting every match
        let sql =
            format!("SELECT position FROM audit_events WHERE {clause} ORDER BY position LIMIT ${}", values.len() + 2);
        let mut conn = self.0.db().acquire().await?;
        let mut positions: Vec<i64> = match conn.exec() {
            Exec::Sqlite(c) => {
                let mut query = sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).bind(filter.after);
                for v in values {
                    query = query.bind(v);
                }
                query.bind(limit + 1).fetch_all(&mut *c).await?
            }
            Exec::Postgres(c) => {
                let mut query = sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).bind(filter.after);
                for v in values {
                    query = query.bind(v);
                }
                query.bind(limit + 1).fetch_all(&mut *c).await?
            }
        };
        drop(conn);
        let has_more = positions.len() as i64 > limit;
        positions.truncate(limit.max(0) as usize);
        let events = self.0.read_positions(&positions).await?;
        Ok(AuditPage { events, has_more })
    }
}
