//! The result of running a plugin: a code that decides what happens to the pod, reasons a user
//! reads, and the plugin that produced it (upstream's `framework.Status`).

use std::fmt;

/// What a plugin decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    /// The plugin ran and the pod may go on.
    Success,
    /// Something went wrong inside the scheduler or against the API: retried after backoff.
    Error,
    /// The pod does not fit now but might after a cluster change (preemption can help): the pod
    /// waits in the unschedulable pool until a relevant event.
    Unschedulable,
    /// The pod does not fit and preemption on this node cannot help.
    UnschedulableAndUnresolvable,
    /// A Permit plugin holds the pod until it is allowed or rejected.
    Wait,
    /// The plugin has nothing to do for this pod: its later extension points are skipped.
    Skip,
}

/// A plugin's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The verdict.
    pub code: Code,
    /// Human-readable reasons (the messages `FailedScheduling` aggregates).
    pub reasons: Vec<String>,
    /// The plugin that returned it (empty when not from a plugin).
    pub plugin: &'static str,
}

impl Status {
    /// A status with `code` and one reason.
    pub fn new(code: Code, reason: impl Into<String>) -> Self {
        Self {
            code,
            reasons: vec![reason.into()],
            plugin: "",
        }
    }

    /// Success (allocation-free).
    pub const fn success() -> Self {
        Self {
            code: Code::Success,
            reasons: Vec::new(),
            plugin: "",
        }
    }

    /// Skip (allocation-free).
    pub const fn skip() -> Self {
        Self {
            code: Code::Skip,
            reasons: Vec::new(),
            plugin: "",
        }
    }

    /// `Unschedulable` with one reason.
    pub fn unschedulable(reason: impl Into<String>) -> Self {
        Self::new(Code::Unschedulable, reason)
    }

    /// `UnschedulableAndUnresolvable` with one reason.
    pub fn unresolvable(reason: impl Into<String>) -> Self {
        Self::new(Code::UnschedulableAndUnresolvable, reason)
    }

    /// `Error` with one message.
    pub fn error(message: impl Into<String>) -> Self {
        Self::new(Code::Error, message)
    }

    /// The same status attributed to `plugin`.
    #[must_use]
    pub fn with_plugin(mut self, plugin: &'static str) -> Self {
        self.plugin = plugin;
        self
    }

    /// Whether the code is `Success`.
    pub fn is_success(&self) -> bool {
        self.code == Code::Success
    }

    /// Whether the code is `Skip`.
    pub fn is_skip(&self) -> bool {
        self.code == Code::Skip
    }

    /// Whether the pod was rejected (`Unschedulable` or `UnschedulableAndUnresolvable`).
    pub fn is_rejected(&self) -> bool {
        matches!(
            self.code,
            Code::Unschedulable | Code::UnschedulableAndUnresolvable
        )
    }

    /// The reasons joined with `, ` (upstream's `Message`).
    pub fn message(&self) -> String {
        self.reasons.join(", ")
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message())
    }
}
