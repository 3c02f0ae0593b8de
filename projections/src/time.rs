//! Times in read models: RFC 3339 UTC text with microseconds, sortable and the same on both
//! backends.

use chrono::{DateTime, SecondsFormat, Utc};

pub fn text(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}
