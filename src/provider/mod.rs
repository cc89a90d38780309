//! Job sources: *what exists and where*. A provider resolves a job, gates on its status and
//! returns listings of remote files (relative path + URL + validators). It never touches the
//! destination directory and knows nothing about how bytes are moved.
pub mod foundry;

use crate::error::Error;
use crate::http::CallError;
use std::collections::BTreeMap;

/// A resolved job.
#[derive(Debug, Clone)]
pub struct Job {
    /// Job name (also its run id).
    pub name: String,
    /// Status as reported by the service, verbatim.
    pub status: String,
    /// Declared named outputs (including `default` when the service lists it).
    pub outputs: BTreeMap<String, OutputSpec>,
}

/// A named output as declared on the job.
#[derive(Debug, Clone, Default)]
pub struct OutputSpec {
    /// `jobOutputType` verbatim (e.g. `uri_folder`).
    pub kind: String,
    /// Registered asset name.
    pub asset_name: Option<String>,
    /// Registered asset version.
    pub asset_version: Option<String>,
}

/// One remote file of an output.
#[derive(Debug, Clone)]
pub struct RemoteFile {
    /// Path relative to the output root, exactly as the service gave it (hostile until planned).
    pub rel: String,
    /// Where its bytes are (a SAS URL: no Authorization header).
    pub url: url::Url,
    /// Size from the listing, when known.
    pub size: Option<u64>,
    /// MD5 from the listing, when known.
    pub md5: Option<[u8; 16]>,
    /// How to get a fresh URL after a 403 (Path A content URIs).
    pub refresh: Option<crate::transfer::Refresher>,
}

impl RemoteFile {
    /// Request headers every data request for this file carries (never secrets: SAS is in the URL).
    pub fn headers(&self) -> Vec<(String, String)> {
        vec![("x-ms-version".to_string(), crate::blob::X_MS_VERSION.to_string())]
    }

    /// How the blob service reports checksums and errors.
    pub fn hints(&self) -> crate::transfer::ServerHints {
        crate::transfer::ServerHints {
            partial_md5_header: Some("x-ms-blob-content-md5".into()),
            error_code_header: Some("x-ms-error-code".into()),
        }
    }
}

/// The files of one output, plus the files that could not be resolved.
#[derive(Debug, Default)]
pub struct Listing {
    /// Files to download.
    pub files: Vec<RemoteFile>,
    /// (relative path, reason) of files that cannot be downloaded.
    pub failures: Vec<(String, String)>,
}

/// Whether a status is terminal for Azure jobs (exact, case-sensitive).
pub fn is_terminal(status: &str) -> bool {
    crate::error::AZURE_TERMINAL.contains(&status)
}

/// Map a failed metadata call on something everything depends on to a run-ending error.
pub fn fatal(e: CallError, what: &str) -> Error {
    match e.status() {
        Some(401 | 403) => Error::Auth {
            message: format!("{what}: access denied ({e})"),
            hint:
                "sign in with `az login` (or set JOBDL_ACCESS_TOKEN) with an identity that can read the project's jobs"
                    .into(),
        },
        Some(404) => Error::NotFound(format!("{what}: not found ({e})")),
        Some(s) if e.is_retryable() => {
            Error::ServiceUnavailable(format!("{what}: service unavailable (HTTP {s}) after {} attempts", e.attempts()))
        }
        None if e.is_retryable() => Error::ServiceUnavailable(format!("{what}: {e} (after {} attempts)", e.attempts())),
        _ => Error::Protocol(format!("{what}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_set_is_exact() {
        for s in ["Completed", "Failed", "Canceled", "NotResponding", "Paused"] {
            assert!(is_terminal(s));
        }
        for s in ["Running", "Queued", "completed", "Finalizing", "CancelRequested", "", "Unknown"] {
            assert!(!is_terminal(s));
        }
    }

    #[test]
    fn call_errors_map_to_exit_codes() {
        let st = |status| CallError::Status { status, code: None, message: None, attempts: 5 };
        assert_eq!(fatal(st(401), "job").exit_code(), 3);
        assert_eq!(fatal(st(403), "job").exit_code(), 3);
        assert_eq!(fatal(st(404), "job").exit_code(), 4);
        let e = fatal(st(503), "job");
        assert_eq!(e.exit_code(), 1);
        assert!(e.to_string().contains("service unavailable (HTTP 503) after 5 attempts"));
        assert_eq!(fatal(st(400), "job").exit_code(), 1);
    }
}
