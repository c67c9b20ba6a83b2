//! Every failure of a request, rendered as the `metav1.Status` object clients expect.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use k8rs_machinery::validation::FieldError;
use serde_json::{Value, json};

/// A request failure, with what upstream answers for it.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{message}")]
    NotFound { message: String, details: Details },
    #[error("{message}")]
    AlreadyExists { message: String, details: Details },
    #[error("{message}")]
    Conflict { message: String, details: Details },
    #[error("{message}")]
    Invalid {
        message: String,
        details: Details,
        causes: Vec<FieldError>,
    },
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{message}")]
    Forbidden { message: String, details: Details },
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    NotAcceptable(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    RequestEntityTooLarge(String),
    #[error("{0}")]
    Gone(String),
    #[error("{0}")]
    TooManyRequests(String),
    #[error("{message}")]
    UnprocessableEntity { message: String },
    #[error("{0}")]
    Timeout(String),
    #[error("{0}")]
    ServiceUnavailable(String),
    #[error("{0}")]
    Internal(String),
}

/// The `details` of a Status: which object the failure is about.
#[derive(Debug, Clone, Default)]
pub struct Details {
    pub name: String,
    pub group: String,
    pub kind: String,
}

impl Details {
    pub fn new(name: &str, group: &str, kind: &str) -> Self {
        Details {
            name: name.to_string(),
            group: group.to_string(),
            kind: kind.to_string(),
        }
    }

    /// `pods`, `deployments.apps`: how upstream names a resource in messages.
    fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.kind.clone()
        } else {
            format!("{}.{}", self.kind, self.group)
        }
    }
}

impl ApiError {
    /// `pods "web" not found`
    pub fn not_found(d: Details) -> Self {
        let message = format!("{} \"{}\" not found", d.qualified(), d.name);
        ApiError::NotFound {
            message,
            details: d,
        }
    }

    pub fn already_exists(d: Details) -> Self {
        let message = format!("{} \"{}\" already exists", d.qualified(), d.name);
        ApiError::AlreadyExists {
            message,
            details: d,
        }
    }

    /// The optimistic-concurrency failure, with upstream's wording.
    pub fn conflict(d: Details) -> Self {
        let message = format!(
            "Operation cannot be fulfilled on {} \"{}\": the object has been modified; please apply your changes to the latest version and try again",
            d.qualified(),
            d.name
        );
        ApiError::Conflict {
            message,
            details: d,
        }
    }

    pub fn conflict_msg(d: Details, why: &str) -> Self {
        let message = format!(
            "Operation cannot be fulfilled on {} \"{}\": {why}",
            d.qualified(),
            d.name
        );
        ApiError::Conflict {
            message,
            details: d,
        }
    }

    /// `Kind.group "name" is invalid: [field: message, ...]`, kind being the Kind (not resource).
    pub fn invalid(kind: &str, group: &str, name: &str, causes: Vec<FieldError>) -> Self {
        let qualified = if group.is_empty() {
            kind.to_string()
        } else {
            format!("{kind}.{group}")
        };
        let joined = k8rs_machinery::validation::aggregate(&causes);
        let message = format!("{qualified} \"{name}\" is invalid: {joined}");
        ApiError::Invalid {
            message,
            details: Details::new(name, group, kind),
            causes,
        }
    }

    pub fn forbidden(d: Details, why: &str) -> Self {
        let message = format!("{} \"{}\" is forbidden: {why}", d.qualified(), d.name);
        ApiError::Forbidden {
            message,
            details: d,
        }
    }

    pub fn internal(err: impl std::fmt::Display) -> Self {
        ApiError::Internal(format!("Internal error occurred: {err}"))
    }

    pub fn status_code(&self) -> StatusCode {
        match self {
            ApiError::NotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::AlreadyExists { .. } | ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::Invalid { .. } | ApiError::UnprocessableEntity { .. } => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden { .. } => StatusCode::FORBIDDEN,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::NotAcceptable(_) => StatusCode::NOT_ACCEPTABLE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::RequestEntityTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Gone(_) => StatusCode::GONE,
            ApiError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ApiError::ServiceUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The `reason` field: upstream's `metav1.StatusReason`.
    pub fn reason(&self) -> &'static str {
        match self {
            ApiError::NotFound { .. } => "NotFound",
            ApiError::AlreadyExists { .. } => "AlreadyExists",
            ApiError::Conflict { .. } => "Conflict",
            ApiError::Invalid { .. } => "Invalid",
            ApiError::UnprocessableEntity { .. } => "Invalid",
            ApiError::BadRequest(_) => "BadRequest",
            ApiError::Unauthorized(_) => "Unauthorized",
            ApiError::Forbidden { .. } => "Forbidden",
            ApiError::MethodNotAllowed(_) => "MethodNotAllowed",
            ApiError::NotAcceptable(_) => "NotAcceptable",
            ApiError::UnsupportedMediaType(_) => "UnsupportedMediaType",
            ApiError::RequestEntityTooLarge(_) => "RequestEntityTooLarge",
            ApiError::Gone(_) => "Expired",
            ApiError::TooManyRequests(_) => "TooManyRequests",
            ApiError::Timeout(_) => "Timeout",
            ApiError::ServiceUnavailable(_) => "ServiceUnavailable",
            ApiError::Internal(_) => "InternalError",
        }
    }

    /// The `metav1.Status` object for this error.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.to_string(),
            "reason": self.reason(),
            "code": self.status_code().as_u16(),
        });
        let details = match self {
            ApiError::NotFound { details, .. }
            | ApiError::AlreadyExists { details, .. }
            | ApiError::Conflict { details, .. }
            | ApiError::Forbidden { details, .. } => Some(details_json(details, &[])),
            ApiError::Invalid {
                details, causes, ..
            } => Some(details_json(details, causes)),
            _ => None,
        };
        if let Some(d) = details {
            status["details"] = d;
        }
        status
    }
}

fn details_json(d: &Details, causes: &[FieldError]) -> Value {
    let mut out = serde_json::Map::new();
    if !d.name.is_empty() {
        out.insert("name".into(), d.name.clone().into());
    }
    if !d.group.is_empty() {
        out.insert("group".into(), d.group.clone().into());
    }
    if !d.kind.is_empty() {
        out.insert("kind".into(), d.kind.clone().into());
    }
    if !causes.is_empty() {
        let causes: Vec<Value> = causes
            .iter()
            .map(|c| json!({"reason": c.reason(), "message": c.body(), "field": c.field}))
            .collect();
        out.insert("causes".into(), causes.into());
    }
    Value::Object(out)
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self.to_status()).unwrap_or_default();
        let mut resp = (self.status_code(), body).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        resp
    }
}

impl From<k8rs_store::Error> for ApiError {
    fn from(err: k8rs_store::Error) -> Self {
        match err {
            k8rs_store::Error::Compacted { .. } => {
                ApiError::Gone("The resourceVersion for the provided list is too old.".into())
            }
            k8rs_store::Error::Closed => ApiError::ServiceUnavailable("storage is closed".into()),
            other => ApiError::internal(other),
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
