//! The `--json` document: one per command, on stdout.

use serde::Serialize;

use crate::exec::report::Row;

/// The `--json` document. `hosts` holds every row (hosts, and stacks and networks for
/// `deploy` and `teardown`: see [`Row`]); `details` what the command adds of its own.
#[derive(Debug, Serialize)]
pub struct JsonResult<'a, T: Serialize> {
    pub command: &'a str,
    pub ok: bool,
    pub changed: bool,
    pub seconds: f64,
    pub hosts: &'a [Row],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<T>,
}
