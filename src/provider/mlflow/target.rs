//! Where the tracking server is and how to sign in to it: `--mlflow-uri` / `MLFLOW_TRACKING_URI`
//! validated (http(s) with a host; plain http only for loopback), MLflow's credential variables,
//! and for `databricks` / `databricks://PROFILE` the Databricks host and credentials from the
//! environment or `~/.databrickscfg`, including OAuth machine-to-machine tokens.
use crate::env;
use crate::env::{
    DATABRICKS_CLIENT_ID, DATABRICKS_CLIENT_SECRET, DATABRICKS_HOST, DATABRICKS_TOKEN, MLFLOW_TRACKING_PASSWORD,
    MLFLOW_TRACKING_USERNAME,
};
use crate::error::Error;
use serde_json::Value;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use url::Url;

/// An OAuth token is renewed when it has less than this left.
const TOKEN_MARGIN: Duration = Duration::from_secs(120);

/// How the tracking server is authenticated.
#[derive(Clone)]
pub enum Credential {
    /// No credentials (a local or open server).
    None,
    /// `MLFLOW_TRACKING_USERNAME` / `MLFLOW_TRACKING_PASSWORD`.
    Basic {
        /// User name.
        user: String,
        /// Password (secret).
        password: String,
    },
    /// A bearer token (`MLFLOW_TRACKING_TOKEN`, a Databricks PAT, or `JOBDL_ACCESS_TOKEN`).
    Bearer(String),
    /// Databricks OAuth machine-to-machine (client credentials), tokens fetched on demand.
    OAuth(Arc<OAuthClient>),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Credential::None => "none",
            Credential::Basic { .. } => "basic",
            Credential::Bearer(_) => "bearer",
            Credential::OAuth(_) => "oauth-m2m",
        })
    }
}

impl Credential {
    /// Register the secret values with [`crate::redact::register_secret`].
    fn register(&self) {
        match self {
            Credential::None => {}
            Credential::Basic { password, .. } => crate::redact::register_secret(password),
            Credential::Bearer(t) => crate::redact::register_secret(t),
            Credential::OAuth(o) => crate::redact::register_secret(&o.client_secret),
        }
    }
}

/// Databricks OAuth M2M: `POST <host>/oidc/v1/token` with the client id and secret.
pub struct OAuthClient {
    token_url: Url,
    client_id: String,
    client_secret: String,
    cached: tokio::sync::Mutex<Option<(String, Instant)>>,
}

/// A validated tracking URI and its credentials.
#[derive(Debug, Clone)]
pub struct Target {
    /// Base URL (no trailing slash): `https://host[/prefix]`.
    pub base: Url,
    /// Credentials for calls to `base`.
    pub credential: Credential,
    /// A Databricks workspace (presigned reads via `credentials-for-read`).
    pub databricks: bool,
    /// Where the credential came from (`MLFLOW_TRACKING_TOKEN`, a profile, …), named when the
    /// server refuses it; `None` without credentials.
    pub credential_from: Option<String>,
}

/// Reads a configuration file (the Databricks one) for the caller, who owns the disk.
pub type ReadFile = dyn Fn(&std::path::Path) -> std::io::Result<String>;

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => a.is_loopback(),
        None => false,
    }
}

/// `raw` for messages: user info (`user:password@`) dropped, secret query values redacted.
fn without_userinfo(raw: &str) -> String {
    let cleaned = match raw.split_once("://") {
        Some((scheme, rest)) => {
            let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            match rest[..end].rfind('@') {
                Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
                None => raw.to_string(),
            }
        }
        None => raw.to_string(),
    };
    crate::redact::redact(&cleaned)
}

/// Check a user-given server URL: http(s), a host, no user info, query or fragment; plain http
/// only for loopback hosts. Returns it without a trailing slash.
fn server_url(raw: &str, what: &str) -> Result<Url, Error> {
    let shown = without_userinfo(raw);
    let bad = |why: &str| Error::usage(format!("invalid {what} '{shown}': {why}"));
    let mut url = Url::parse(raw).map_err(|e| bad(&e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad(
            "jobdl talks to a tracking server: use http(s)://host[:port][/prefix], databricks or databricks://PROFILE",
        ));
    }
    if url.host().is_none() {
        return Err(bad("the URL has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad(&format!(
            "it must not contain user info (set {MLFLOW_TRACKING_USERNAME} and {MLFLOW_TRACKING_PASSWORD} instead)"
        )));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("it must not contain a query or fragment"));
    }
    if url.scheme() == "http" && !is_loopback(&url) {
        return Err(bad("plain http is allowed only for loopback hosts (127.0.0.1, ::1, localhost); use https"));
    }
    let path = url.path().trim_end_matches('/').to_string();
    url.set_path(&path);
    Ok(url)
}

/// [`resolve_target`] with an injected environment and home directory (unit tests).
pub fn resolve_target_with(
    raw: &str,
    access_token: Option<String>,
    env: &dyn Fn(&str) -> Option<String>,
    home: Option<PathBuf>,
    read: &ReadFile,
) -> Result<Target, Error> {
    let t = raw.trim();
    if t == "databricks" || t.starts_with("databricks://") {
        return databricks_target(t, access_token, env, home, read);
    }
    let base = server_url(t, "MLflow tracking URI")?;
    let (credential, from) = match (env(env::MLFLOW_TRACKING_USERNAME), env(env::MLFLOW_TRACKING_PASSWORD)) {
        // As MLflow's own client: user name and password win over a token.
        (Some(user), Some(password)) => (
            Credential::Basic { user, password },
            Some(format!("{MLFLOW_TRACKING_USERNAME} and {MLFLOW_TRACKING_PASSWORD}")),
        ),
        (Some(_), None) | (None, Some(_)) => {
            return Err(Error::usage(format!(
                "set both {MLFLOW_TRACKING_USERNAME} and {MLFLOW_TRACKING_PASSWORD}, or neither"
            )));
        }
        (None, None) => match (env(env::MLFLOW_TRACKING_TOKEN), access_token) {
            (Some(tok), _) => (Credential::Bearer(tok), Some(env::MLFLOW_TRACKING_TOKEN.to_string())),
            (None, Some(tok)) => (Credential::Bearer(tok), Some(crate::env::JOBDL_ACCESS_TOKEN.to_string())),
            (None, None) => (Credential::None, None),
        },
    };
    credential.register();
    Ok(Target { base, credential, databricks: false, credential_from: from })
}

fn databricks_target(
    t: &str,
    access_token: Option<String>,
    env: &dyn Fn(&str) -> Option<String>,
    home: Option<PathBuf>,
    read: &ReadFile,
) -> Result<Target, Error> {
    let profile_given = t.strip_prefix("databricks://").map(|p| p.trim_end_matches('/').to_string());
    if profile_given.as_deref().is_some_and(str::is_empty) {
        return Err(Error::usage("invalid MLflow tracking URI 'databricks://': name a profile (databricks://PROFILE)"));
    }
    // A bare `databricks` takes the environment first (as the Databricks SDKs), then the profile.
    let from_env = profile_given.is_none() && env(env::DATABRICKS_HOST).is_some();
    let mut place = String::new();
    let fields: HashMap<String, String> = if from_env {
        [
            ("host", env::DATABRICKS_HOST),
            ("token", env::DATABRICKS_TOKEN),
            ("client_id", env::DATABRICKS_CLIENT_ID),
            ("client_secret", env::DATABRICKS_CLIENT_SECRET),
        ]
        .into_iter()
        .filter_map(|(k, e)| env(e).map(|v| (k.to_string(), v)))
        .collect()
    } else {
        let profile = profile_given.or_else(|| env(env::DATABRICKS_CONFIG_PROFILE)).unwrap_or_else(|| "DEFAULT".into());
        let path = match env(env::DATABRICKS_CONFIG_FILE) {
            Some(p) => PathBuf::from(p),
            None => home.map(|h| h.join(".databrickscfg")).ok_or_else(|| {
                Error::usage("no home directory to find ~/.databrickscfg; set DATABRICKS_HOST and DATABRICKS_TOKEN")
            })?,
        };
        let text = read(&path).map_err(|e| {
            Error::usage(format!(
                "cannot read the Databricks configuration {} ({e}); set {DATABRICKS_HOST} and {DATABRICKS_TOKEN}, \
                 or create profile '{profile}' with `databricks configure`",
                path.display()
            ))
        })?;
        place = format!("profile '{profile}' of {}", path.display());
        parse_databrickscfg(&text, &profile).ok_or_else(|| {
            Error::usage(format!("profile '{profile}' not found in the Databricks configuration {}", path.display()))
        })?
    };
    let named = |var: &str, key: &str| if from_env { var.to_string() } else { format!("`{key}` in the {place}") };
    let host = fields
        .get("host")
        .ok_or_else(|| Error::usage(format!("no Databricks host: set {DATABRICKS_HOST} or `host` in the profile")))?;
    let with_scheme = if host.contains("://") { host.clone() } else { format!("https://{host}") };
    // Workspace URLs are often copied from the browser (`https://adb-1.2.azuredatabricks.net/?o=1#`):
    // only the origin counts.
    let origin = match Url::parse(&with_scheme) {
        Ok(mut u) => {
            u.set_query(None);
            u.set_fragment(None);
            u.set_path("");
            u.to_string()
        }
        Err(_) => with_scheme,
    };
    let mut base = server_url(&origin, "Databricks host")?;
    base.set_path("");
    let credential = if let Some(tok) = fields.get("token") {
        (Credential::Bearer(tok.clone()), named(env::DATABRICKS_TOKEN, "token"))
    } else if let (Some(id), Some(secret)) = (fields.get("client_id"), fields.get("client_secret")) {
        let mut token_url = base.clone();
        token_url.set_path("/oidc/v1/token");
        let oauth = Credential::OAuth(Arc::new(OAuthClient {
            token_url,
            client_id: id.clone(),
            client_secret: secret.clone(),
            cached: tokio::sync::Mutex::new(None),
        }));
        (oauth, named(&format!("{DATABRICKS_CLIENT_ID} and {DATABRICKS_CLIENT_SECRET}"), "client_id"))
    } else if let Some(tok) = access_token {
        (Credential::Bearer(tok), crate::env::JOBDL_ACCESS_TOKEN.to_string())
    } else {
        return Err(Error::usage(format!(
            "no Databricks credentials: set {DATABRICKS_TOKEN}, or {DATABRICKS_CLIENT_ID} and \
             {DATABRICKS_CLIENT_SECRET} (or `token`, or `client_id` and `client_secret`, in the profile)"
        )));
    };
    let (credential, from) = credential;
    credential.register();
    Ok(Target { base, credential, databricks: true, credential_from: Some(from) })
}

/// One profile of a `~/.databrickscfg` (INI: `[profile]` sections, `key = value`, `#`/`;`
/// comments; keys are case-insensitive and `[DEFAULT]` values are inherited, as Python's
/// configparser reads it). `None` when the profile is not there.
pub fn parse_databrickscfg(text: &str, profile: &str) -> Option<HashMap<String, String>> {
    let mut sections: HashMap<String, HashMap<String, String>> = HashMap::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        let l = line.trim();
        if l.is_empty() || l.starts_with('#') || l.starts_with(';') {
            continue;
        }
        if let Some(name) = l.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
            let name = name.trim().to_string();
            sections.entry(name.clone()).or_default();
            current = Some(name);
            continue;
        }
        let Some(sec) = &current else { continue };
        let Some((k, v)) = l.split_once('=').or_else(|| l.split_once(':')) else { continue };
        let v = v.trim();
        if !v.is_empty() {
            sections.entry(sec.clone()).or_default().insert(k.trim().to_ascii_lowercase(), v.to_string());
        }
    }
    let defaults = sections.get("DEFAULT").cloned().unwrap_or_default();
    let own = sections.get(profile)?;
    let mut out = defaults;
    out.extend(own.iter().map(|(k, v)| (k.clone(), v.clone())));
    Some(out)
}

impl OAuthClient {
    /// A valid access token, fetched (or renewed) when needed.
    pub(super) async fn token(&self, client: &reqwest::Client, attempts: u32) -> Result<String, Error> {
        let mut cached = self.cached.lock().await;
        if let Some((tok, until)) = cached.as_ref()
            && until.saturating_duration_since(Instant::now()) > TOKEN_MARGIN
        {
            return Ok(tok.clone());
        }
        let shown = crate::redact::url_for_display(&self.token_url);
        let mut last = String::new();
        for attempt in 1..=attempts.max(1) {
            let resp = client
                .post(self.token_url.clone())
                .basic_auth(&self.client_id, Some(&self.client_secret))
                .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .header(reqwest::header::ACCEPT, "application/json")
                .body("grant_type=client_credentials&scope=all-apis")
                .timeout(Duration::from_secs(60))
                .send()
                .await;
            match resp {
                Ok(r) if r.status().is_success() => {
                    let body = crate::http::read_limited(r, 1 << 20)
                        .await
                        .map_err(|e| Error::ServiceUnavailable(crate::http::describe_transport(&e)))?;
                    let v: Value = serde_json::from_slice(&body)
                        .map_err(|_| Error::Protocol(format!("OAuth token from {shown}: not JSON")))?;
                    let tok = v
                        .get("access_token")
                        .and_then(Value::as_str)
                        .filter(|t| !t.is_empty())
                        .ok_or_else(|| Error::Protocol(format!("OAuth token from {shown}: no access_token")))?;
                    let secs = v.get("expires_in").and_then(Value::as_u64).unwrap_or(3600).clamp(60, 86_400);
                    crate::redact::register_secret(tok);
                    *cached = Some((tok.to_string(), Instant::now() + Duration::from_secs(secs)));
                    return Ok(tok.to_string());
                }
                Ok(r) if matches!(r.status().as_u16(), 400 | 401 | 403) => {
                    return Err(Error::Auth {
                        message: format!(
                            "Databricks OAuth token request to {shown} refused (HTTP {})",
                            r.status().as_u16()
                        ),
                        hint: format!(
                            "check {DATABRICKS_CLIENT_ID} and {DATABRICKS_CLIENT_SECRET} (or the profile's \
                             client_id and client_secret): a service principal with an OAuth secret"
                        ),
                    });
                }
                Ok(r) => last = format!("HTTP {}", r.status().as_u16()),
                Err(e) => last = crate::http::describe_transport(&e),
            }
            crate::log::log(1, format!("POST {shown} -> {last} (attempt {attempt})"));
            tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
        }
        Err(Error::ServiceUnavailable(format!("Databricks OAuth token request to {shown} failed: {last}")))
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    fn disk(p: &std::path::Path) -> std::io::Result<String> {
        std::fs::read_to_string(p)
    }

    /// An environment made of `pairs` (shared with the provider's tests).
    pub(in crate::provider::mlflow) fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let m: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k: &str| m.get(k).cloned()
    }

    #[test]
    fn tracking_uri_validation() {
        let none = env_of(&[]);
        let t = resolve_target_with("http://127.0.0.1:5000/", None, &none, None, &disk).unwrap();
        assert_eq!(t.base.as_str(), "http://127.0.0.1:5000/");
        assert!(matches!(t.credential, Credential::None));
        let t = resolve_target_with("https://mlflow.example.invalid/prefix/", None, &none, None, &disk).unwrap();
        assert_eq!(t.base.path(), "/prefix");
        for bad in [
            "http://mlflow.example.invalid",
            "https://u:p@mlflow.example.invalid",
            "https://mlflow.example.invalid/?x=1",
            "file:///tmp/mlruns",
            "sqlite:///mlflow.db",
            "databricks://",
            "not a url",
        ] {
            let e = resolve_target_with(bad, None, &none, None, &disk).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad}");
            assert!(!e.to_string().contains(":p@"), "{e}");
        }
    }

    #[test]
    fn credentials_precedence() {
        let uri = "http://localhost:5000";
        let basic = env_of(&[
            (env::MLFLOW_TRACKING_USERNAME, "u"),
            (env::MLFLOW_TRACKING_PASSWORD, "p"),
            (env::MLFLOW_TRACKING_TOKEN, "t"),
        ]);
        assert!(matches!(
            resolve_target_with(uri, None, &basic, None, &disk).unwrap().credential,
            Credential::Basic { .. }
        ));
        let tok = env_of(&[(env::MLFLOW_TRACKING_TOKEN, "t")]);
        let c = resolve_target_with(uri, Some("j".into()), &tok, None, &disk).unwrap().credential;
        assert!(matches!(c, Credential::Bearer(ref t) if t == "t"));
        let c = resolve_target_with(uri, Some("j".into()), &env_of(&[]), None, &disk).unwrap().credential;
        assert!(matches!(c, Credential::Bearer(ref t) if t == "j"));
        let half = env_of(&[(env::MLFLOW_TRACKING_USERNAME, "u")]);
        assert_eq!(resolve_target_with(uri, None, &half, None, &disk).unwrap_err().exit_code(), 2);
        assert_eq!(format!("{:?}", Credential::Bearer("secret".into())), "bearer");
    }

    #[test]
    fn databricks_from_env_and_profiles() {
        let env =
            env_of(&[(env::DATABRICKS_HOST, "adb-1.2.azuredatabricks.net/?o=1#"), (env::DATABRICKS_TOKEN, "dapi1")]);
        let t = resolve_target_with("databricks", None, &env, None, &disk).unwrap();
        assert!(t.databricks);
        assert_eq!(t.base.as_str(), "https://adb-1.2.azuredatabricks.net/");
        assert!(matches!(t.credential, Credential::Bearer(ref x) if x == "dapi1"));

        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(".databrickscfg"),
            "; comment\n[DEFAULT]\nhost = https://default.cloud.databricks.com\ntoken = dapiD\n\n\
             [staging]\nhost=https://staging.cloud.databricks.com/\nclient_id = cid\nclient_secret = csec\ntoken =\n",
        )
        .unwrap();
        let home = Some(dir.path().to_path_buf());
        let none = env_of(&[]);
        let t = resolve_target_with("databricks", None, &none, home.clone(), &disk).unwrap();
        assert_eq!(t.base.host_str(), Some("default.cloud.databricks.com"));
        // A profile inherits [DEFAULT]; its own token line is empty, so the DEFAULT token is used.
        let t = resolve_target_with("databricks://staging", None, &none, home.clone(), &disk).unwrap();
        assert_eq!(t.base.host_str(), Some("staging.cloud.databricks.com"));
        assert!(matches!(t.credential, Credential::Bearer(ref x) if x == "dapiD"));
        let e = resolve_target_with("databricks://nope", None, &none, home.clone(), &disk).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("profile 'nope' not found"), "{e}");
        let e = resolve_target_with("databricks", None, &none, Some(dir.path().join("missing")), &disk).unwrap_err();
        assert!(e.to_string().contains("DATABRICKS_HOST"), "{e}");
        std::fs::write(
            dir.path().join("m2m"),
            "[sp]\nhost = https://sp.cloud.databricks.com\nclient_id=a\nclient_secret=b\n",
        )
        .unwrap();
        let env = env_of(&[(env::DATABRICKS_CONFIG_FILE, dir.path().join("m2m").to_str().unwrap())]);
        let t = resolve_target_with("databricks://sp", None, &env, None, &disk).unwrap();
        match t.credential {
            Credential::OAuth(o) => assert_eq!(o.token_url.as_str(), "https://sp.cloud.databricks.com/oidc/v1/token"),
            other => panic!("{other:?}"),
        }
        let plain = env_of(&[(env::DATABRICKS_HOST, "http://workspace.example.invalid"), (env::DATABRICKS_TOKEN, "x")]);
        assert_eq!(resolve_target_with("databricks", None, &plain, None, &disk).unwrap_err().exit_code(), 2);
    }
}
