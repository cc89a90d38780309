//! S3 credentials (docs/kfp-s3-api.md §5.2): `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` /
//! `AWS_SESSION_TOKEN`, else the `[AWS_PROFILE or default]` section of the shared credentials
//! file (`AWS_SHARED_CREDENTIALS_FILE`, else `~/.aws/credentials`). The secret and the token are
//! never printed: `Debug` shows the access key id only.
use std::path::{Path, PathBuf};

/// An access key, its secret and an optional session token.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    key: String,
    secret: String,
    token: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").field("key", &self.key).finish_non_exhaustive()
    }
}

impl Credentials {
    /// Credentials from their parts (empty token = none).
    pub fn new(key: impl Into<String>, secret: impl Into<String>, token: Option<String>) -> Self {
        let c = Credentials { key: key.into(), secret: secret.into(), token: token.filter(|t| !t.is_empty()) };
        crate::redact::register_secret(&c.secret);
        if let Some(t) = &c.token {
            crate::redact::register_secret(t);
        }
        c
    }

    /// The access key id (not a secret: shown in errors).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The secret access key. Secret.
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// The session token. Secret.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }
}

/// Where the credentials came from (shown at `-v`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`.
    Environment,
    /// A profile of a shared credentials file.
    Profile {
        /// The file.
        file: PathBuf,
        /// The section.
        profile: String,
    },
}

/// Resolve credentials. `env` reads an environment variable; `home` is the home directory.
/// `Ok(None)`: none configured anywhere. `Err`: configured but unusable (a key without its
/// secret, a named profile missing from the file, an unreadable file).
pub fn resolve(
    env: &dyn Fn(&str) -> Option<String>,
    home: Option<&Path>,
) -> Result<Option<(Credentials, Source)>, String> {
    let var = |n: &str| env(n).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
    match (var(crate::env::AWS_ACCESS_KEY_ID), var(crate::env::AWS_SECRET_ACCESS_KEY)) {
        (Some(k), Some(s)) => {
            return Ok(Some((Credentials::new(k, s, var(crate::env::AWS_SESSION_TOKEN)), Source::Environment)));
        }
        (Some(_), None) => return Err("AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not".into()),
        (None, Some(_)) => return Err("AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is not".into()),
        (None, None) => {}
    }
    let named = var(crate::env::AWS_PROFILE);
    let profile = named.clone().unwrap_or_else(|| "default".into());
    let file = match var(crate::env::AWS_SHARED_CREDENTIALS_FILE) {
        Some(f) => PathBuf::from(f),
        None => match home {
            Some(h) => h.join(".aws").join("credentials"),
            None => return Ok(None),
        },
    };
    let text = match std::fs::read_to_string(&file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && named.is_none() => return Ok(None),
        Err(e) => return Err(format!("cannot read the AWS credentials file {}: {e}", file.display())),
    };
    match profile_credentials(&text, &profile)? {
        Some(c) => Ok(Some((c, Source::Profile { file, profile }))),
        None if named.is_some() => {
            Err(format!("profile '{}' (AWS_PROFILE) is not in {}", profile.escape_debug(), file.display()))
        }
        None => Ok(None),
    }
}

/// The credentials of `[profile]` in an INI credentials file; `Ok(None)` when the section is
/// absent; `Err` when it lacks `aws_access_key_id` or `aws_secret_access_key` (the message never
/// quotes a value).
pub fn profile_credentials(text: &str, profile: &str) -> Result<Option<Credentials>, String> {
    let mut in_section = false;
    let mut found = false;
    let (mut key, mut secret, mut token) = (None, None, None);
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            in_section = name.trim() == profile;
            found |= in_section;
            continue;
        }
        if !in_section {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else { continue };
        let v = v.trim().to_string();
        match k.trim().to_ascii_lowercase().as_str() {
            "aws_access_key_id" => key = Some(v),
            "aws_secret_access_key" => secret = Some(v),
            "aws_session_token" => token = Some(v),
            _ => {}
        }
    }
    if !found {
        return Ok(None);
    }
    match (key.filter(|k| !k.is_empty()), secret.filter(|s| !s.is_empty())) {
        (Some(k), Some(s)) => Ok(Some(Credentials::new(k, s, token))),
        _ => Err(format!(
            "profile '{}' of the AWS credentials file lacks aws_access_key_id or aws_secret_access_key",
            profile.escape_debug()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const FILE: &str = "# comment\n[default]\naws_access_key_id = AKIDDEFAULT\naws_secret_access_key=SECRETDEFAULT\n\n\
                        [ci]\nAWS_ACCESS_KEY_ID = AKIDCI\naws_secret_access_key = SECRET/CI=\naws_session_token = TOKENCI\n\
                        [broken]\naws_access_key_id = AKIDBROKEN\n";

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k: &str| m.get(k).cloned()
    }

    #[test]
    fn profiles_are_read_and_secrets_never_debug_printed() {
        let c = profile_credentials(FILE, "default").unwrap().unwrap();
        assert_eq!((c.key(), c.secret(), c.token()), ("AKIDDEFAULT", "SECRETDEFAULT", None));
        let c = profile_credentials(FILE, "ci").unwrap().unwrap();
        assert_eq!((c.key(), c.secret(), c.token()), ("AKIDCI", "SECRET/CI=", Some("TOKENCI")));
        assert_eq!(profile_credentials(FILE, "nope").unwrap(), None);
        let e = profile_credentials(FILE, "broken").unwrap_err();
        assert!(e.contains("broken") && !e.contains("AKIDBROKEN"), "{e}");
        let shown = format!("{c:?}");
        assert!(shown.contains("AKIDCI") && !shown.contains("SECRET") && !shown.contains("TOKENCI"), "{shown}");
    }

    #[test]
    fn environment_wins_then_the_profile_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(".aws")).unwrap();
        std::fs::write(dir.path().join(".aws/credentials"), FILE).unwrap();
        let home = Some(dir.path());

        let e = env(&[("AWS_ACCESS_KEY_ID", "AKENV"), ("AWS_SECRET_ACCESS_KEY", "SENV"), ("AWS_SESSION_TOKEN", "T")]);
        let (c, src) = resolve(&e, home).unwrap().unwrap();
        assert_eq!((c.key(), c.secret(), c.token(), src), ("AKENV", "SENV", Some("T"), Source::Environment));

        assert!(resolve(&env(&[("AWS_ACCESS_KEY_ID", "AKENV")]), home).unwrap_err().contains("AWS_SECRET_ACCESS_KEY"));

        let (c, _) = resolve(&env(&[]), home).unwrap().unwrap();
        assert_eq!(c.key(), "AKIDDEFAULT");
        let (c, src) = resolve(&env(&[("AWS_PROFILE", "ci")]), home).unwrap().unwrap();
        assert_eq!(c.key(), "AKIDCI");
        assert!(matches!(src, Source::Profile { profile, .. } if profile == "ci"));
        assert!(resolve(&env(&[("AWS_PROFILE", "missing")]), home).unwrap_err().contains("missing"));

        let other = dir.path().join("other");
        std::fs::write(&other, "[default]\naws_access_key_id=AKOTHER\naws_secret_access_key=S\n").unwrap();
        let f = other.to_str().unwrap();
        let (c, _) = resolve(&env(&[("AWS_SHARED_CREDENTIALS_FILE", f)]), home).unwrap().unwrap();
        assert_eq!(c.key(), "AKOTHER");

        let empty = tempfile::tempdir().unwrap();
        assert_eq!(resolve(&env(&[]), Some(empty.path())).unwrap(), None);
        assert_eq!(resolve(&env(&[]), None).unwrap(), None);
    }
}
