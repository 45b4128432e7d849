//! From an `object_store` error to a `StorageReady` reason and a message a user can act
//! on: the server's own words, trimmed, with every secret value blanked out.

use std::error::Error as StdError;

use object_store::client::{HttpError, HttpErrorKind};

use crate::api::Reason;

/// Why a probe failed, as the condition shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeFailure {
    /// `BucketNotFound`, `AccessDenied`, `EndpointUnreachable`, `TLSError` or
    /// `StorageProbeFailed`.
    pub reason: Reason,
    pub message: String,
}

/// The longest server message kept in a condition.
const MAX_MESSAGE: usize = 300;

/// Classifies the error of probe step `step` (`write`, `read`, `list`, `delete` or
/// `connect`), blanking out each of `secrets`.
pub fn classify(step: &str, error: &object_store::Error, secrets: &[&str]) -> ProbeFailure {
    let reason = reason(error);
    // A transport failure has no server to quote: its innermost error says what broke.
    let words = match reason {
        Reason::TLSError | Reason::EndpointUnreachable => innermost(error),
        _ => server_words(error),
    };
    let detail = redact(&words, secrets);
    let message = match reason {
        Reason::BucketNotFound => format!("{step} failed: the bucket does not exist: {detail}"),
        Reason::AccessDenied => {
            format!("{step} failed: the bucket refused the credentials: {detail}")
        }
        Reason::EndpointUnreachable => {
            format!("{step} failed: the storage endpoint did not answer: {detail}")
        }
        Reason::TLSError => format!("{step} failed: TLS handshake failed: {detail}"),
        _ => format!("{step} failed: {detail}"),
    };
    ProbeFailure { reason, message }
}

fn reason(error: &object_store::Error) -> Reason {
    // Transport first: a TLS or connection failure has no HTTP status to go by.
    let chain = chain(error);
    if chain.iter().any(|e| is_tls(*e)) {
        return Reason::TLSError;
    }
    let transport = chain
        .iter()
        .find_map(|e| e.downcast_ref::<HttpError>().map(HttpError::kind));
    if matches!(
        transport,
        Some(HttpErrorKind::Connect | HttpErrorKind::Timeout)
    ) {
        return Reason::EndpointUnreachable;
    }
    match error {
        object_store::Error::PermissionDenied { .. }
        | object_store::Error::Unauthenticated { .. } => Reason::AccessDenied,
        // A missing object on read or delete would be a missing bucket too: the probe
        // wrote it a moment before. A 404 on write or list can only be the bucket.
        object_store::Error::NotFound { .. } => Reason::BucketNotFound,
        _ => Reason::StorageProbeFailed,
    }
}

/// The error and its sources, outermost first. An `io::Error` hides what it wraps from
/// `source()`, so its inner error is followed explicitly.
fn chain<'a>(error: &'a (dyn StdError + 'static)) -> Vec<&'a (dyn StdError + 'static)> {
    let mut out = Vec::new();
    let mut next = Some(error);
    while let Some(current) = next {
        out.push(current);
        next = match current.downcast_ref::<std::io::Error>() {
            Some(io) => io
                .get_ref()
                .map(|inner| inner as &(dyn StdError + 'static))
                .or_else(|| current.source()),
            None => current.source(),
        };
        if out.len() > 16 {
            break;
        }
    }
    out
}

/// rustls's errors reach here as text inside an `io::Error` (the type does not survive
/// the HTTP client's wrapping), so they are recognised by rustls's own wording: a
/// certificate the CA does not vouch for, or a server that does not speak TLS.
fn is_tls(error: &(dyn StdError + 'static)) -> bool {
    let text = error.to_string();
    [
        "invalid peer certificate",
        "InvalidContentType",
        "HandshakeFailure",
        "certificate verify",
    ]
    .iter()
    .any(|mark| text.contains(mark))
}

/// What the server said, in a line: an S3 or Azure XML error's code and message when
/// there is one, else the innermost error's text.
fn server_words(error: &object_store::Error) -> String {
    let text = chain(error)
        .iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>();
    let all = text.join(": ");
    if let Some(code) = xml_field(&all, "Code") {
        return match xml_field(&all, "Message") {
            Some(message) => format!("{code}: {message}"),
            None => code,
        };
    }
    let innermost = text.last().cloned().unwrap_or_default();
    let outermost = text.first().cloned().unwrap_or_default();
    let words = if innermost == outermost || outermost.contains(&innermost) {
        outermost
    } else {
        format!("{outermost} ({innermost})")
    };
    trim(&words)
}

fn innermost(error: &object_store::Error) -> String {
    trim(
        &chain(error)
            .last()
            .map(|e| e.to_string())
            .unwrap_or_default(),
    )
}

fn xml_field(text: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let start = text.find(&open)? + open.len();
    let end = start + text[start..].find(&close)?;
    Some(trim(&text[start..end]))
}

/// One line of at most [`MAX_MESSAGE`] characters.
fn trim(text: &str) -> String {
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match line.char_indices().nth(MAX_MESSAGE) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line,
    }
}

/// `text` with every secret value (and any run of it) replaced.
fn redact(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_string();
    for secret in secrets.iter().filter(|s| s.len() >= 4) {
        out = out.replace(secret, "<redacted>");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_s3_error_body_gives_its_code_and_message_and_no_key() {
        let error = object_store::Error::PermissionDenied {
            path: "p".into(),
            source: "Client error with status 403 Forbidden: <?xml version=\"1.0\"?><Error><Code>SignatureDoesNotMatch</Code><Message>The request signature we calculated does not match</Message><AWSAccessKeyId>AKIDEXAMPLE</AWSAccessKeyId></Error>".into(),
        };
        let failure = classify("write", &error, &["AKIDEXAMPLE", "wJalrXUtnFEMI"]);
        assert_eq!(failure.reason, Reason::AccessDenied);
        assert_eq!(
            failure.message,
            "write failed: the bucket refused the credentials: SignatureDoesNotMatch: The request signature we calculated does not match"
        );
    }

    #[test]
    fn a_not_found_is_a_missing_bucket() {
        let error = object_store::Error::NotFound {
            path: "p".into(),
            source: "<Error><Code>NoSuchBucket</Code><Message>The specified bucket does not exist</Message></Error>".into(),
        };
        let failure = classify("write", &error, &[]);
        assert_eq!(failure.reason, Reason::BucketNotFound);
        assert!(
            failure.message.contains("NoSuchBucket"),
            "{}",
            failure.message
        );
    }

    #[test]
    fn secrets_are_blanked_and_long_messages_cut() {
        let long = format!("key AKIDEXAMPLE {}", "x ".repeat(400));
        let error = object_store::Error::Generic {
            store: "S3",
            source: long.into(),
        };
        let failure = classify("list", &error, &["AKIDEXAMPLE"]);
        assert_eq!(failure.reason, Reason::StorageProbeFailed);
        assert!(!failure.message.contains("AKIDEXAMPLE"));
        assert!(failure.message.contains("<redacted>"));
        assert!(failure.message.chars().count() < MAX_MESSAGE + 40);
    }
}
