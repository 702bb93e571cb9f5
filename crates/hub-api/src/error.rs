//! The error body JupyterHub's REST API returns for every failed request.

use serde::{Deserialize, Serialize};

/// `{"status": 404, "message": "No such user"}`: the shape every JupyterHub API error takes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The HTTP status code, repeated in the body.
    pub status: u16,
    /// A message meant for people; never internals.
    pub message: String,
}

impl ErrorBody {
    /// An error body with the given status and message.
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_as_jupyterhub_does() {
        let body = ErrorBody::new(404, "No such user");
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            r#"{"status":404,"message":"No such user"}"#
        );
    }
}
