//! Server-side printing: the `meta.k8s.io/v1` Table columns and row cells that upstream's API
//! server returns for `Accept: application/json;as=Table;v=v1;g=meta.k8s.io`, for every built-in
//! type (upstream `pkg/printers/internalversion/printers.go`).
//!
//! kubectl prints whatever the server sends, so column names, types, priorities and each cell's
//! text follow upstream exactly. The server always prints "wide": every row carries the cells of
//! the priority-1 columns too, and kubectl hides them unless `-o wide`.
//!
//! Rows are computed from the object's JSON (its stored form), field by field, so that odd input
//! (missing fields, wrong types) prints `<none>`, `<unknown>` or an empty cell instead of failing.
//! Time is passed in (`now`), never read from the clock.
//!
//! This crate does no IO and must not depend on the apiserver, the store or any client crate.

mod admission;
mod apps;
mod autoscaling;
mod batch;
mod certificates;
mod coordination;
mod core;
mod descriptions;
mod discovery;
mod format;
mod networking;
mod node;
mod policy;
mod quantity;
mod rbac;
mod scheduling;
mod storage;

use chrono::{DateTime, Utc};
use serde_json::Value;

pub use format::human_duration;

/// One column of a Table (`meta.k8s.io/v1` `TableColumnDefinition`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    /// Upstream's column name, e.g. `"Name"`, `"Ready"` (kubectl upper-cases it).
    pub name: &'static str,
    /// `"string"`, `"integer"`, `"number"`, `"boolean"` or `"date"`.
    pub type_: &'static str,
    /// `"name"` for the object's name column, else empty.
    pub format: &'static str,
    /// Human-readable description of the column.
    pub description: &'static str,
    /// 0 = always shown; 1 = shown only with `-o wide`.
    pub priority: i32,
}

impl Column {
    /// The column as its `TableColumnDefinition` JSON (`name`, `type`, `format`, `description`,
    /// `priority`).
    pub fn definition(&self) -> Value {
        serde_json::json!({
            "name": self.name,
            "type": self.type_,
            "format": self.format,
            "description": self.description,
            "priority": self.priority,
        })
    }
}

/// Prints objects of one resource as Table rows.
pub trait Printer: Sync {
    /// The columns, in the order of [`Printer::row`]'s cells.
    fn columns(&self) -> &'static [Column];
    /// The cells of one object (one per column, wide columns included), computed at `now`.
    fn row(&self, obj: &Value, now: DateTime<Utc>) -> Vec<Value>;
}

/// A printer made of a column list and a row function; every printer in this crate is one.
pub(crate) struct TablePrinter {
    pub(crate) columns: &'static [Column],
    pub(crate) row: fn(&Value, DateTime<Utc>) -> Vec<Value>,
}

impl Printer for TablePrinter {
    fn columns(&self) -> &'static [Column] {
        self.columns
    }

    fn row(&self, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        (self.row)(obj, now)
    }
}

/// The printer for a resource, by API group (`""` for core) and resource plural (e.g. `"pods"`,
/// `"deployments"`).
///
/// Built-in resources that upstream prints with the generic table (roles, clusterroles,
/// limitranges, customresourcedefinitions, ...) return [`default_printer`]; unknown resources
/// return `None` (callers then use [`default_printer`] as upstream does).
pub fn printer_for(group: &str, resource: &str) -> Option<&'static dyn Printer> {
    match group {
        "" => core::printer(resource),
        "apps" => apps::printer(resource),
        "batch" => batch::printer(resource),
        "autoscaling" => autoscaling::printer(resource),
        "coordination.k8s.io" => coordination::printer(resource),
        "discovery.k8s.io" => discovery::printer(resource),
        "events.k8s.io" => (resource == "events").then_some(&core::EVENT as &dyn Printer),
        "policy" => policy::printer(resource),
        "rbac.authorization.k8s.io" => rbac::printer(resource),
        "networking.k8s.io" => networking::printer(resource),
        "storage.k8s.io" => storage::printer(resource),
        "scheduling.k8s.io" => scheduling::printer(resource),
        "certificates.k8s.io" => certificates::printer(resource),
        "node.k8s.io" => node::printer(resource),
        "admissionregistration.k8s.io" => admission::printer(resource),
        "apiextensions.k8s.io" => {
            (resource == "customresourcedefinitions").then_some(default_printer())
        }
        _ => None,
    }
}

/// The generic printer upstream uses for types without a printer: `Name` and `Created At` (a
/// `date` column holding the RFC 3339 creation time).
pub fn default_printer() -> &'static dyn Printer {
    &DEFAULT
}

static DEFAULT_COLUMNS: &[Column] = &[
    format::name_column(),
    Column {
        name: "Created At",
        type_: "date",
        format: "",
        description: descriptions::META_CREATION_TIMESTAMP,
        priority: 0,
    },
];

static DEFAULT: TablePrinter = TablePrinter {
    columns: DEFAULT_COLUMNS,
    row: default_row,
};

fn default_row(obj: &Value, _now: DateTime<Utc>) -> Vec<Value> {
    let created = format::time_at(obj, "/metadata/creationTimestamp")
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| "0001-01-01T00:00:00Z".to_string());
    vec![format::name(obj), Value::String(created)]
}

#[cfg(test)]
mod tests;
