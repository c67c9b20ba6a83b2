/// Why a body could not be decoded or an object encoded. Every variant is a client-visible
/// failure: the API server answers decode errors with 400 (or 415 for [`Error::NotProtobuf`])
/// and encode errors with 500 (or 406 for [`Error::UnknownKind`], upstream's NotAcceptable).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The body does not start with the `k8s\0` magic: it is not a Kubernetes protobuf message.
    #[error("provided data does not appear to be a protobuf message, expected prefix k8s\\x00")]
    NotProtobuf,
    /// The envelope (or the object to encode) names no kind or no apiVersion.
    #[error("object has no kind or apiVersion")]
    MissingKind,
    /// No protobuf schema is known for this kind (custom resources, alpha/beta versions).
    #[error("no protobuf schema for kind {kind:?} in {api_version:?}")]
    UnknownKind { api_version: String, kind: String },
    /// The envelope declares a content encoding or content type this codec does not read.
    #[error("unsupported protobuf envelope: {0}")]
    Unsupported(String),
    /// The bytes are not a valid encoding of the expected message.
    #[error("malformed protobuf{}: {message}", at(.path))]
    Malformed { path: String, message: String },
    /// A JSON value does not fit the field it belongs to.
    #[error("cannot encode{}: {message}", at(.path))]
    Encode { path: String, message: String },
    /// The message or object nests deeper than the codec allows.
    #[error("object nested deeper than {0} levels")]
    TooDeep(usize),
}

fn at(path: &str) -> String {
    if path.is_empty() {
        String::new()
    } else {
        format!(" at {path}")
    }
}

impl Error {
    pub(crate) fn malformed(message: impl Into<String>) -> Error {
        Error::Malformed {
            path: String::new(),
            message: message.into(),
        }
    }

    pub(crate) fn encode(message: impl Into<String>) -> Error {
        Error::Encode {
            path: String::new(),
            message: message.into(),
        }
    }

    /// Prefixes the path of a field error with the field (`spec`) or index (`[2]`) it is in.
    pub(crate) fn within(mut self, segment: &str) -> Error {
        if let Error::Malformed { path, .. } | Error::Encode { path, .. } = &mut self {
            if segment.is_empty() {
                return self;
            }
            *path = if path.is_empty() {
                segment.to_string()
            } else if path.starts_with('[') {
                format!("{segment}{path}")
            } else {
                format!("{segment}.{path}")
            };
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_read_like_json_paths() {
        let e = Error::malformed("bad")
            .within("[1]")
            .within("containers")
            .within("spec");
        assert_eq!(
            e.to_string(),
            "malformed protobuf at spec.containers[1]: bad"
        );
        assert_eq!(Error::encode("x").to_string(), "cannot encode: x");
    }
}
