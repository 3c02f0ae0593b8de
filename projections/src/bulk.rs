//! Statements that write many rows at once from one JSON array bound to `$1` (or another
//! parameter): a run of events of one kind costs a statement per table, not one per event.
//! The texts differ per backend only in how the array is unnested.

use careledger_store::{Backend, Tx, sql_exec};
use serde::Serialize;

use crate::ProjectionError;

/// How a column is read from a row object of the JSON array.
#[derive(Clone, Copy)]
pub enum Column {
    Text(&'static str),
    BigInt(&'static str),
    /// Always true (not read from the row).
    True(&'static str),
}

impl Column {
    pub fn name(self) -> &'static str {
        match self {
            Column::Text(n) | Column::BigInt(n) | Column::True(n) => n,
        }
    }

    /// The expression reading it from the row `row`.
    fn value(self, row: &str) -> String {
        match self {
            Column::Text(n) => format!("{row}->>'{n}'"),
            Column::BigInt(n) => format!("CAST({row}->>'{n}' AS BIGINT)"),
            Column::True(_) => "TRUE".to_string(),
        }
    }
}

/// The row variable and the FROM item unnesting the JSON array bound to parameter `$param`.
pub fn source(backend: Backend, param: u32) -> (&'static str, String) {
    match backend {
        Backend::Postgres => ("r", format!("jsonb_array_elements(${param}::jsonb) AS t(r)")),
        Backend::Sqlite => ("value", format!("json_each(${param})")),
    }
}

/// `INSERT INTO table (columns) SELECT ... FROM <the array bound to $1>`.
pub fn insert(backend: Backend, table: &str, columns: &[Column]) -> String {
    let (row, from) = source(backend, 1);
    let names: Vec<&str> = columns.iter().map(|c| c.name()).collect();
    let values: Vec<String> = columns.iter().map(|c| c.value(row)).collect();
    format!("INSERT INTO {table} ({}) SELECT {} FROM {from}", names.join(", "), values.join(", "))
}

/// [`insert`], replacing the row of the same `key` columns. The rows of one array must not repeat
/// a key (PostgreSQL refuses to change a row twice in one statement).
pub fn upsert(backend: Backend, table: &str, columns: &[Column], key: &[&str]) -> String {
    let set: Vec<String> =
        columns.iter().map(|c| c.name()).filter(|n| !key.contains(n)).map(|n| format!("{n} = excluded.{n}")).collect();
    // `WHERE true`: SQLite cannot otherwise tell the upsert's ON from a join's
    format!(
        "{} WHERE true ON CONFLICT ({}) DO UPDATE SET {}",
        insert(backend, table, columns),
        key.join(", "),
        set.join(", ")
    )
}

/// `UPDATE table SET columns FROM <the array bound to $1> WHERE` the `key` columns match.
///
/// The first key column is also looked up among the array's values (see [`one_of`]): PostgreSQL
/// guesses 100 rows for any array and, on a table of a few thousand rows, joins them by reading
/// the whole table (measured: the claims table read twice per batch of submissions).
pub fn update(backend: Backend, table: &str, columns: &[Column], key: &[Column]) -> String {
    update_also(backend, table, columns, key, &[])
}

/// [`update`], also setting `also` (`column = expression` of the row being updated, `x`).
pub fn update_also(backend: Backend, table: &str, columns: &[Column], key: &[Column], also: &[&str]) -> String {
    let (row, from) = source(backend, 1);
    let mut set: Vec<String> = columns.iter().map(|c| format!("{} = {}", c.name(), c.value(row))).collect();
    set.extend(also.iter().map(|s| s.to_string()));
    let mut matches: Vec<String> = key.iter().map(|c| format!("x.{} = {}", c.name(), c.value(row))).collect();
    if let Some(first) = key.first() {
        let column = format!("x.{}", first.name());
        matches.push(one_of(backend, &column, &format!("SELECT {} FROM {from}", first.value(row))));
    }
    format!("UPDATE {table} AS x SET {} FROM {from} WHERE {}", set.join(", "), matches.join(" AND "))
}

/// `column` is one of the values `subquery` gives, per backend.
///
/// PostgreSQL plans `IN (subquery)` as a join, by statistics that right after a bulk of writes
/// (before autovacuum has analysed the tables) may say an equality matches hundreds of rows: it
/// then reads a whole table where an index lookup of a few rows would do (measured: the 100,000
/// policies hashed for every claim submitted, 50 to 120 ms each). `= ANY(ARRAY(subquery))` runs the
/// subquery first and looks its values up in the column's index, whatever the statistics say.
/// SQLite's planner does that with `IN`.
pub fn one_of(backend: Backend, column: &str, subquery: &str) -> String {
    match backend {
        Backend::Postgres => format!("{column} = ANY(ARRAY({subquery}))"),
        Backend::Sqlite => format!("{column} IN ({subquery})"),
    }
}

/// Runs a statement of this module over `rows` bound as one JSON array (nothing when there are
/// none): `serde_json::Value` objects, or structs whose fields are the columns. The statements are
/// built from the projectors' column constants, never from input.
pub async fn write<R: Serialize>(tx: &mut Tx, sql: String, rows: Vec<R>) -> Result<(), ProjectionError> {
    if rows.is_empty() {
        return Ok(());
    }
    sql_exec!(tx.exec(), sqlx::AssertSqlSafe(sql), [serde_json::to_string(&rows)?])?;
    Ok(())
}
