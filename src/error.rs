//! Error categories, the exit-code table of the CLI contract, and "error / hint" rendering.
//! Every failure class maps to exactly one exit code here, in one `match`.
//!
//! | exit | `--json` `error.code` | when |
//! |---|---|---|
//! | 0 | — (the result document) | everything requested is on disk and verified |
//! | 1 | `internal` | a malformed answer, a local I/O failure that ends the run |
//! | 1 | `service_unavailable` | a call everything depends on still failing after its retries |
//! | 2 | `usage` | bad flag, configuration, URL or glob |
//! | 3 | `auth` | 401/403, or no credential gave a token |
//! | 4 | `not_found` | job, output or blob not found |
//! | 5 | `job_not_terminal` | the job is not finished (or `--wait` timed out) |
//! | 6 | — (the result document, failed entries) | some files failed |
//! | 7 | `locked` | another jobdl holds the destination's lock (past `--lock-timeout`) |
//! | 8 | — (the result document, `job.status`) | `download --follow`: the job ended without success (Failed, Canceled, …) |
//! | 130 | — (the result document, `totals.interrupted`) | Ctrl+C / SIGTERM |
use thiserror::Error;

/// Terminal job states (Azure), as listed in the contract.
pub const AZURE_TERMINAL: &[&str] = &["Completed", "Failed", "Canceled", "NotResponding", "Paused"];
/// Terminal job states (Foundry): azure-ai-projects' `_TERMINAL_JOB_STATUSES` also has `Unknown`
/// (azure-ai-ml's list, followed for Azure ML, does not).
pub const FOUNDRY_TERMINAL: &[&str] = &["Completed", "Failed", "Canceled", "NotResponding", "Paused", "Unknown"];
/// Terminal run states (MLflow), as listed in the contract.
pub const MLFLOW_TERMINAL: &[&str] = &["FINISHED", "FAILED", "KILLED"];

/// A failure that ends the whole run (per-file failures are collected, not raised).
#[derive(Debug, Error)]
pub enum Error {
    /// Bad flag, bad configuration, bad URL given by the user.
    #[error("{0}")]
    Usage(String),
    /// 401/403 from a service call.
    #[error("{message}")]
    Auth {
        /// What failed.
        message: String,
        /// How to fix it.
        hint: String,
    },
    /// Job, output or blob not found.
    #[error("{0}")]
    NotFound(String),
    /// The job is not in a terminal state (or `--wait` timed out).
    #[error("job '{job}' is {status}, not in a terminal state ({}){extra}", .terminal.join(", "))]
    NotTerminal {
        /// Job name.
        job: String,
        /// The job source's terminal states.
        terminal: &'static [&'static str],
        /// Last seen status.
        status: String,
        /// Extra words (e.g. "after waiting 10m").
        extra: String,
    },
    /// A call everything depends on kept failing after its retries.
    #[error("{0}")]
    ServiceUnavailable(String),
    /// A service answered something we cannot use (malformed payload, repeated page token...).
    #[error("{0}")]
    Protocol(String),
    /// Local I/O failure that ends the run (destination not writable, lock held...).
    #[error("{0}")]
    Io(String),
    /// Another jobdl process holds the destination's lock (and `--lock-timeout` passed).
    #[error("{0}")]
    Locked(String),
    /// Ctrl+C / SIGTERM.
    #[error("interrupted")]
    Interrupted,
}

/// Exit code when some files failed (the run itself finished).
pub const EXIT_FILES_FAILED: u8 = 6;

/// Exit code when another jobdl holds the destination's lock.
pub const EXIT_LOCKED: u8 = 7;

/// Exit code of `download --follow` when the followed job ended without success (Failed,
/// Canceled, …): its files are downloaded all the same (the result document, not an error).
pub const EXIT_JOB_UNSUCCESSFUL: u8 = 8;

/// Every `(exit code, error.code)` pair a `--json` error document can carry.
pub const JSON_ERROR_CODES: &[(u8, &str)] = &[
    (1, "internal"),
    (1, "service_unavailable"),
    (2, "usage"),
    (3, "auth"),
    (4, "not_found"),
    (5, "job_not_terminal"),
    (EXIT_LOCKED, "locked"),
];

impl Error {
    /// The documented exit code of this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_) => 2,
            Error::Auth { .. } => 3,
            Error::NotFound(_) => 4,
            Error::NotTerminal { .. } => 5,
            Error::ServiceUnavailable(_) | Error::Protocol(_) | Error::Io(_) => 1,
            Error::Locked(_) => EXIT_LOCKED,
            Error::Interrupted => 130,
        }
    }

    /// The `code` string of the `--json` error document.
    pub fn json_code(&self) -> &'static str {
        match self {
            Error::Usage(_) => "usage",
            Error::Auth { .. } => "auth",
            Error::NotFound(_) => "not_found",
            Error::NotTerminal { .. } => "job_not_terminal",
            Error::ServiceUnavailable(_) => "service_unavailable",
            Error::Protocol(_) | Error::Io(_) => "internal",
            Error::Locked(_) => "locked",
            // Never in an error document: an interruption prints the result document.
            Error::Interrupted => "interrupted",
        }
    }

    /// A hint for the user, if any.
    pub fn hint(&self) -> Option<&str> {
        match self {
            Error::Auth { hint, .. } => Some(hint),
            _ => None,
        }
    }

    /// Shorthand for a usage error.
    pub fn usage(msg: impl Into<String>) -> Self {
        Error::Usage(msg.into())
    }
}

/// Result with the crate's run-ending error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_match_the_contract() {
        assert_eq!(Error::usage("x").exit_code(), 2);
        assert_eq!(Error::Auth { message: "a".into(), hint: "h".into() }.exit_code(), 3);
        assert_eq!(Error::NotFound("x".into()).exit_code(), 4);
        let nt = Error::NotTerminal {
            job: "j".into(),
            status: "Running".into(),
            terminal: AZURE_TERMINAL,
            extra: String::new(),
        };
        assert_eq!(nt.exit_code(), 5);
        assert!(nt.to_string().contains("Running"));
        assert!(nt.to_string().contains("Completed, Failed, Canceled, NotResponding, Paused"));
        let nt = Error::NotTerminal {
            job: "r".into(),
            status: "RUNNING".into(),
            terminal: MLFLOW_TERMINAL,
            extra: "".into(),
        };
        assert!(nt.to_string().contains("(FINISHED, FAILED, KILLED)"), "{nt}");
        assert_eq!(Error::ServiceUnavailable("x".into()).exit_code(), 1);
        assert_eq!(Error::Interrupted.exit_code(), 130);
        assert_eq!(Error::Locked("l".into()).exit_code(), 7);
        assert_eq!(Error::Locked("l".into()).json_code(), "locked");
    }

    /// One error of every variant, whose (exit code, JSON code) must be in [`JSON_ERROR_CODES`].
    fn every_variant() -> Vec<Error> {
        vec![
            Error::usage("u"),
            Error::Auth { message: "a".into(), hint: "h".into() },
            Error::NotFound("n".into()),
            Error::NotTerminal {
                job: "j".into(),
                terminal: AZURE_TERMINAL,
                status: "Running".into(),
                extra: "".into(),
            },
            Error::ServiceUnavailable("s".into()),
            Error::Protocol("p".into()),
            Error::Io("i".into()),
            Error::Locked("l".into()),
        ]
    }

    #[test]
    fn the_follow_outcome_code_is_in_the_readme_table() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
        let exit_table = &readme[readme.find("## Exit codes").unwrap()..];
        let exit_table = &exit_table[..exit_table[3..].find("\n## ").unwrap()];
        assert!(exit_table.contains(&format!("| {EXIT_JOB_UNSUCCESSFUL} |")), "README Exit codes lacks 8");
        assert!(exit_table.contains("--follow"), "README Exit codes does not say 8 is --follow's");
    }

    #[test]
    fn every_json_code_is_in_the_table_the_readme_and_the_schema() {
        for e in every_variant() {
            assert!(JSON_ERROR_CODES.contains(&(e.exit_code(), e.json_code())), "{e:?} is not in JSON_ERROR_CODES");
        }
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
        let exit_table = &readme[readme.find("## Exit codes").unwrap()..];
        let exit_table = &exit_table[..exit_table[3..].find("\n## ").unwrap()];
        let schema =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/jobdl-v1.schema.json")).unwrap();
        let schema: serde_json::Value = serde_json::from_str(&schema).unwrap();
        let codes = &schema["$defs"]["error"]["properties"]["error"]["properties"]["code"]["enum"];
        let exits = &schema["$defs"]["error"]["properties"]["error"]["properties"]["exit_code"]["enum"];
        for (exit, code) in JSON_ERROR_CODES {
            assert!(exit_table.contains(&format!("| {exit} | `{code}`")), "README Exit codes lacks {exit} {code}");
            assert!(codes.as_array().unwrap().iter().any(|c| c == code), "schema lacks code {code}");
            assert!(exits.as_array().unwrap().iter().any(|c| c == exit), "schema lacks exit code {exit}");
        }
    }
}
