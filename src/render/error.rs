//! Why the builders cannot render an object. Every case is the user's to fix in a spec,
//! so each maps to the condition reason the controllers report it under.

use crate::api::Reason;

/// A spec the builders cannot turn into objects.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// A WorkerPool's `spec.podOverrides` is not a pod template, so the pool's
    /// StatefulSet cannot be built.
    #[error("spec.podOverrides is not a valid pod template: {message}")]
    InvalidPodOverrides {
        /// The pool whose overrides these are.
        pool: String,
        /// Why they do not read as a pod template.
        message: String,
    },
    /// Loki would sign its S3 requests for region `dummy`, which AWS rejects: the spec
    /// names no region and neither does the AWS endpoint.
    #[error(
        "set spec.storage.s3.region: Loki signs S3 requests for region \"dummy\" when none is set, which AWS rejects, and {endpoint} names no region"
    )]
    RegionRequired {
        /// The endpoint's `host:port`.
        endpoint: String,
    },
}

impl RenderError {
    /// The reason of the condition the controllers report this error under.
    pub fn reason(&self) -> Reason {
        match self {
            RenderError::InvalidPodOverrides { .. } => Reason::InvalidPodOverrides,
            RenderError::RegionRequired { .. } => Reason::RegionRequired,
        }
    }
}
