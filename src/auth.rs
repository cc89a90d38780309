//! Bearer tokens for service calls: `JOBDL_ACCESS_TOKEN`, or a credential chain built from
//! `azure_identity` (environment service principal, workload identity, managed identity, Azure CLI,
//! Azure Developer CLI) plus our own Azure ML compute managed identity (`MSI_ENDPOINT` +
//! `MSI_SECRET`, which `azure_identity` refuses), with tokens cached per scope. Knows nothing about
//! where tokens are sent.
use crate::error::Error;
use crate::hosts::Cloud;
use azure_core::cloud::CloudConfiguration;
use azure_core::credentials::TokenCredential;
use azure_core::http::{ClientOptions, Transport};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;
use tokio::sync::Mutex;

/// The audience of Foundry project endpoint calls.
pub const FOUNDRY_SCOPE: &str = "https://ai.azure.com/.default";
/// The audience of storage data-plane calls (identity-based datastores), the same in every cloud.
pub const STORAGE_SCOPE: &str = "https://storage.azure.com/.default";
/// `api-version` of the Azure ML compute managed-identity endpoint.
const MSI_API_VERSION: &str = "2017-09-01";

/// The ARM audience of `cloud` (`https://management.azure.com/.default`, ...); also used for the
/// regional Azure ML API hosts.
pub fn arm_scope(cloud: Cloud) -> String {
    format!("https://{}/.default", cloud.arm_host())
}

/// How long one credential may take (the CLI ones start a process).
const CREDENTIAL_TIMEOUT: Duration = Duration::from_secs(30);

/// Where tokens come from.
#[derive(Clone)]
pub enum TokenSource {
    /// A fixed token (`JOBDL_ACCESS_TOKEN`), used for every scope.
    Static(String),
    /// The Azure credential chain.
    Chain(Arc<Chain>),
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenSource::Static(_) => f.write_str("TokenSource::Static(<redacted>)"),
            TokenSource::Chain(_) => f.write_str("TokenSource::Chain"),
        }
    }
}

impl TokenSource {
    /// From `JOBDL_ACCESS_TOKEN` when set, else the credential chain for `cloud` sharing `client`.
    pub fn from_env(static_token: Option<String>, client: &reqwest::Client, cloud: Cloud) -> TokenSource {
        match static_token.filter(|t| !t.trim().is_empty()) {
            Some(t) => TokenSource::Static(t.trim().to_string()),
            None => TokenSource::Chain(Arc::new(Chain::new(client, cloud))),
        }
    }

    /// Whether the static token is in use (errors mention it).
    pub fn is_static(&self) -> bool {
        matches!(self, TokenSource::Static(_))
    }

    /// A token for `scope`.
    pub async fn token(&self, scope: &str) -> Result<String, Error> {
        Ok(self.token_expiring(scope).await?.0)
    }

    /// A token for `scope` and when it expires (`None` for the static token, whose life is unknown).
    pub async fn token_expiring(&self, scope: &str) -> Result<(String, Option<OffsetDateTime>), Error> {
        let (token, expires) = match self {
            TokenSource::Static(t) => (t.clone(), None),
            TokenSource::Chain(c) => {
                let (t, e) = c.token(scope).await?;
                (t, Some(e))
            }
        };
        crate::redact::register_secret(&token);
        Ok((token, expires))
    }
}

/// One credential of the chain.
enum Cred {
    /// From `azure_identity`.
    Sdk(Arc<dyn TokenCredential>),
    /// Azure ML compute managed identity.
    AzureMl(AzureMlCredential),
}

impl Cred {
    async fn get(&self, scope: &str) -> Result<(String, OffsetDateTime), String> {
        match self {
            Cred::Sdk(c) => c
                .get_token(&[scope], None)
                .await
                .map(|t| (t.token.secret().to_string(), t.expires_on))
                .map_err(|e| e.to_string()),
            Cred::AzureMl(c) => c.get_token(scope).await,
        }
    }
}

/// One source of the chain, in the documented order.
enum Step {
    /// A credential that may give a token.
    Cred(&'static str, Cred),
    /// A source that is not configured here, or could not be built: its name and why.
    Skipped(&'static str, String),
}

/// The credential chain with a per-scope cache.
pub struct Chain {
    steps: Vec<Step>,
    cache: Mutex<HashMap<String, (String, time::OffsetDateTime)>>,
}

/// `not configured (...)` naming the variables of a source that are missing.
fn not_configured(missing: &[&str], all: &[&str]) -> String {
    if missing.len() == all.len() && all.len() > 1 {
        format!("not configured ({} are not set)", all.join(", "))
    } else {
        format!("not configured ({} not set)", missing.join(", "))
    }
}

impl Chain {
    /// Build every credential the environment allows, in the documented order, signing in
    /// against `cloud`'s Entra authority; the sources the environment does not configure are
    /// kept with why, for the error message.
    pub fn new(client: &reqwest::Client, cloud: Cloud) -> Chain {
        Self::with_env(client, cloud, &crate::env::var)
    }

    fn with_env(client: &reqwest::Client, cloud: Cloud, env: &dyn Fn(&str) -> Option<String>) -> Chain {
        let cloud_config = Arc::new(match cloud {
            Cloud::AzureCloud => CloudConfiguration::AzurePublic,
            Cloud::AzureUSGovernment => CloudConfiguration::AzureGovernment,
            Cloud::AzureChinaCloud => CloudConfiguration::AzureChina,
        });
        let options = || ClientOptions {
            transport: Some(Transport::new(Arc::new(client.clone()))),
            cloud: Some(cloud_config.clone()),
            ..Default::default()
        };
        let mut steps: Vec<Step> = Vec::new();
        let env = |k: &str| env(k).filter(|v| !v.is_empty());
        let missing = |vars: &[&'static str]| -> Vec<&'static str> {
            vars.iter().copied().filter(|v| env(v).is_none()).collect()
        };
        const SP: &str = "environment service principal";
        const SP_VARS: [&str; 3] =
            [crate::env::AZURE_TENANT_ID, crate::env::AZURE_CLIENT_ID, crate::env::AZURE_CLIENT_SECRET];
        if let (Some(tenant), Some(client_id), Some(secret)) =
            (env(crate::env::AZURE_TENANT_ID), env(crate::env::AZURE_CLIENT_ID), env(crate::env::AZURE_CLIENT_SECRET))
        {
            let o = azure_identity::ClientSecretCredentialOptions { client_options: options() };
            match azure_identity::ClientSecretCredential::new(&tenant, client_id, secret.into(), Some(o)) {
                Ok(c) => steps.push(Step::Cred(SP, Cred::Sdk(c))),
                Err(e) => steps.push(Step::Skipped(SP, format!("cannot be used: {}", first_line(&e.to_string())))),
            }
        } else {
            steps.push(Step::Skipped(SP, not_configured(&missing(&SP_VARS), &SP_VARS)));
        }
        const WI: &str = "workload identity";
        if env(crate::env::AZURE_FEDERATED_TOKEN_FILE).is_some() {
            let o = azure_identity::WorkloadIdentityCredentialOptions {
                credential_options: azure_identity::ClientAssertionCredentialOptions { client_options: options() },
                ..Default::default()
            };
            match azure_identity::WorkloadIdentityCredential::new(Some(o)) {
                Ok(c) => steps.push(Step::Cred(WI, Cred::Sdk(c))),
                Err(e) => steps.push(Step::Skipped(WI, format!("cannot be used: {}", first_line(&e.to_string())))),
            }
        } else {
            steps.push(Step::Skipped(
                WI,
                not_configured(&[crate::env::AZURE_FEDERATED_TOKEN_FILE], &[crate::env::AZURE_FEDERATED_TOKEN_FILE]),
            ));
        }
        const AML: &str = "Azure ML compute managed identity";
        const MI: &str = "managed identity";
        if env(crate::env::IDENTITY_ENDPOINT).is_none()
            && let (Some(endpoint), Some(secret)) = (env(crate::env::MSI_ENDPOINT), env(crate::env::MSI_SECRET))
        {
            // Azure ML compute (as Python azure-identity's AzureMLCredential).
            match AzureMlCredential::new(client, &endpoint, secret, env(crate::env::DEFAULT_IDENTITY_CLIENT_ID)) {
                Ok(c) => steps.push(Step::Cred(AML, Cred::AzureMl(c))),
                Err(e) => steps.push(Step::Skipped(AML, format!("cannot be used: {e}"))),
            }
        } else if env(crate::env::IDENTITY_ENDPOINT).is_some() || env(crate::env::JOBDL_TRY_IMDS).is_some() {
            // IMDS is probed only when asked for (or on App Service style hosts): probing the
            // metadata address on a laptop costs seconds and would surprise users.
            let o =
                azure_identity::ManagedIdentityCredentialOptions { client_options: options(), ..Default::default() };
            match azure_identity::ManagedIdentityCredential::new(Some(o)) {
                Ok(c) => steps.push(Step::Cred(MI, Cred::Sdk(c))),
                Err(e) => steps.push(Step::Skipped(MI, format!("cannot be used: {}", first_line(&e.to_string())))),
            }
        } else {
            steps.push(Step::Skipped(
                MI,
                "not configured (no MSI_ENDPOINT + MSI_SECRET or IDENTITY_ENDPOINT; the instance metadata \
                 service is tried only with JOBDL_TRY_IMDS=1)"
                    .into(),
            ));
        }
        const CLI: &str = "Azure CLI";
        match azure_identity::AzureCliCredential::new(None) {
            Ok(c) => steps.push(Step::Cred(CLI, Cred::Sdk(c))),
            Err(e) => steps.push(Step::Skipped(CLI, format!("cannot be used: {}", first_line(&e.to_string())))),
        }
        const AZD: &str = "Azure Developer CLI";
        match azure_identity::AzureDeveloperCliCredential::new(None) {
            Ok(c) => steps.push(Step::Cred(AZD, Cred::Sdk(c))),
            Err(e) => steps.push(Step::Skipped(AZD, format!("cannot be used: {}", first_line(&e.to_string())))),
        }
        Chain { steps, cache: Mutex::new(HashMap::new()) }
    }

    /// A token for `scope` and its expiry: the cached one while it has more than five minutes
    /// left, else a new one from the first credential that gives one.
    async fn token(&self, scope: &str) -> Result<(String, OffsetDateTime), Error> {
        let mut cache = self.cache.lock().await;
        let now = time::OffsetDateTime::now_utc();
        if let Some((tok, exp)) = cache.get(scope)
            && *exp - now > time::Duration::minutes(5)
        {
            return Ok((tok.clone(), *exp));
        }
        let mut tried = vec![format!("JOBDL_ACCESS_TOKEN: not set")];
        for step in &self.steps {
            let (name, cred) = match step {
                Step::Skipped(name, why) => {
                    tried.push(format!("{name}: {why}"));
                    continue;
                }
                Step::Cred(name, cred) => (name, cred),
            };
            match tokio::time::timeout(CREDENTIAL_TIMEOUT, cred.get(scope)).await {
                Ok(Ok((tok, expires_on))) => {
                    crate::log::log(1, format!("got a token for {scope} from {name}"));
                    cache.insert(scope.to_string(), (tok.clone(), expires_on));
                    return Ok((tok, expires_on));
                }
                Ok(Err(e)) if e.contains("not found on PATH") => {
                    tried.push(format!("{name}: not installed ({})", first_line(&e)))
                }
                Ok(Err(e)) => tried.push(format!("{name}: failed: {}", first_line(&e))),
                Err(_) => tried.push(format!("{name}: failed: timed out after {}s", CREDENTIAL_TIMEOUT.as_secs())),
            }
        }
        Err(Error::Auth {
            message: format!(
                "no credential could get a token for {scope}; tried, in order:\n  {}",
                tried.join("\n  ")
            ),
            hint: "sign in with `az login` (or `azd auth login`), set AZURE_TENANT_ID/AZURE_CLIENT_ID/AZURE_CLIENT_SECRET, \
                   or pass a token in JOBDL_ACCESS_TOKEN"
                .into(),
        })
    }
}

fn first_line(s: &str) -> String {
    crate::redact::redact(s.lines().next().unwrap_or(""))
}

/// The managed identity of Azure ML compute (`MSI_ENDPOINT` + `MSI_SECRET`): `GET
/// $MSI_ENDPOINT?resource=<audience>&api-version=2017-09-01` with header `secret`, plus
/// `clientid` for a user-assigned identity. The protocol of Python azure-identity's
/// `AzureMLCredential`; `azure_identity` refuses this environment.
pub struct AzureMlCredential {
    client: reqwest::Client,
    endpoint: url::Url,
    secret: String,
    client_id: Option<String>,
}

impl AzureMlCredential {
    /// A credential for the given endpoint (loopback on the compute node) and secret.
    pub fn new(
        client: &reqwest::Client,
        endpoint: &str,
        secret: String,
        client_id: Option<String>,
    ) -> Result<Self, String> {
        let endpoint = url::Url::parse(endpoint.trim()).map_err(|e| format!("invalid MSI_ENDPOINT: {e}"))?;
        if !matches!(endpoint.scheme(), "http" | "https") {
            return Err("invalid MSI_ENDPOINT: not an http(s) URL".into());
        }
        Ok(AzureMlCredential { client: client.clone(), endpoint, secret, client_id })
    }

    /// A token for `scope` and its expiry.
    pub async fn get_token(&self, scope: &str) -> Result<(String, OffsetDateTime), String> {
        let resource = scope.strip_suffix("/.default").unwrap_or(scope);
        let mut url = self.endpoint.clone();
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("resource", resource).append_pair("api-version", MSI_API_VERSION);
            if let Some(id) = &self.client_id {
                q.append_pair("clientid", id);
            }
        }
        let requested = OffsetDateTime::now_utc();
        let resp = self
            .client
            .get(url)
            .header("secret", &self.secret)
            .header("metadata", "true")
            .timeout(CREDENTIAL_TIMEOUT)
            .send()
            .await
            .map_err(|e| format!("request failed: {}", crate::http::describe_transport(&e)))?;
        let status = resp.status().as_u16();
        let body = crate::http::read_limited(resp, 64 * 1024)
            .await
            .map_err(|e| format!("request failed: {}", crate::http::describe_transport(&e)))?;
        if !(200..300).contains(&status) {
            return Err(format!("the managed identity endpoint answered HTTP {status}"));
        }
        let v: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|_| "the managed identity endpoint answered invalid JSON".to_string())?;
        let token = v
            .get("access_token")
            .and_then(|t| t.as_str())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| "the managed identity endpoint returned no access_token".to_string())?;
        Ok((token.to_string(), msi_expiry(&v, requested)))
    }
}

/// `expires_on` (epoch seconds as a number or string, or the App Service 2017-09-01 date form),
/// else `expires_in` seconds after the request; else 10 minutes (renewed early rather than late).
fn msi_expiry(v: &serde_json::Value, requested: OffsetDateTime) -> OffsetDateTime {
    let num = |k: &str| match v.get(k) {
        Some(serde_json::Value::Number(n)) => n.as_i64(),
        Some(serde_json::Value::String(s)) => s.trim().parse::<i64>().ok(),
        _ => None,
    };
    if let Some(t) = num("expires_on").and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok()) {
        return t;
    }
    if let Some(s) = v.get("expires_on").and_then(|s| s.as_str()) {
        let fmt = time::macros::format_description!(
            "[month padding:none]/[day padding:none]/[year] [hour repr:12 padding:none]:[minute]:[second] [period] [offset_hour sign:mandatory]:[offset_minute]"
        );
        if let Ok(t) = OffsetDateTime::parse(s.trim(), &fmt) {
            return t;
        }
    }
    if let Some(secs) = num("expires_in") {
        return requested + time::Duration::seconds(secs);
    }
    requested + time::Duration::minutes(10)
}

#[cfg(test)]
mod tests {
    use super::*;
    use wiremock::matchers::{header, method, path, query_param, query_param_is_missing};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    #[test]
    fn scopes_per_cloud() {
        assert_eq!(arm_scope(Cloud::AzureCloud), "https://management.azure.com/.default");
        assert_eq!(arm_scope(Cloud::AzureUSGovernment), "https://management.usgovcloudapi.net/.default");
        assert_eq!(arm_scope(Cloud::AzureChinaCloud), "https://management.chinacloudapi.cn/.default");
        assert_eq!(STORAGE_SCOPE, "https://storage.azure.com/.default");
    }

    #[tokio::test]
    async fn azure_ml_compute_identity() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/msi/token"))
            .and(query_param("resource", "https://management.azure.com"))
            .and(query_param("api-version", "2017-09-01"))
            .and(query_param_is_missing("clientid"))
            .and(header("secret", "s3cret"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(serde_json::json!({"access_token": "tok-1", "expires_on": "1900000000"})),
            )
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/msi/token"))
            .and(query_param("resource", "https://storage.azure.com"))
            .and(query_param("clientid", "uai-1"))
            .and(header("secret", "s3cret"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(serde_json::json!({"access_token": "tok-2", "expires_in": 600})),
            )
            .expect(1)
            .mount(&server)
            .await;
        let client = reqwest::Client::new();
        let endpoint = format!("{}/msi/token", server.uri());
        let c = AzureMlCredential::new(&client, &endpoint, "s3cret".into(), None).unwrap();
        let (tok, exp) = c.get_token("https://management.azure.com/.default").await.unwrap();
        assert_eq!((tok.as_str(), exp.unix_timestamp()), ("tok-1", 1_900_000_000));
        let uai = AzureMlCredential::new(&client, &endpoint, "s3cret".into(), Some("uai-1".into())).unwrap();
        let before = OffsetDateTime::now_utc();
        let (tok, exp) = uai.get_token(STORAGE_SCOPE).await.unwrap();
        assert_eq!(tok, "tok-2");
        assert!(exp - before >= time::Duration::seconds(590), "{exp}");

        // Refusals name the status, never the secret.
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(400).set_body_string("bad secret s3cret"))
            .mount(&server)
            .await;
        let c = AzureMlCredential::new(&client, &server.uri(), "s3cret".into(), None).unwrap();
        let e = c.get_token(STORAGE_SCOPE).await.unwrap_err();
        assert!(e.contains("HTTP 400") && !e.contains("s3cret"), "{e}");
        assert!(AzureMlCredential::new(&client, "not a url", "x".into(), None).is_err());
    }

    #[test]
    fn msi_expiry_forms() {
        let now = OffsetDateTime::from_unix_timestamp(1_000_000).unwrap();
        let v = |j: serde_json::Value| msi_expiry(&j, now).unix_timestamp();
        assert_eq!(v(serde_json::json!({"expires_on": 1_900_000_000})), 1_900_000_000);
        assert_eq!(v(serde_json::json!({"expires_on": "1900000000"})), 1_900_000_000);
        assert_eq!(v(serde_json::json!({"expires_on": "09/14/2027 12:00:00 PM +00:00"})), 1_820_923_200);
        assert_eq!(v(serde_json::json!({"expires_in": "3600"})), 1_003_600);
        assert_eq!(v(serde_json::json!({})), 1_000_600);
    }

    #[tokio::test]
    async fn static_token_serves_every_scope() {
        let t = TokenSource::from_env(Some(" tok ".into()), &reqwest::Client::new(), Cloud::AzureUSGovernment);
        assert!(t.is_static());
        assert_eq!(t.token(STORAGE_SCOPE).await.unwrap(), "tok");
        assert_eq!(t.token(&arm_scope(Cloud::AzureUSGovernment)).await.unwrap(), "tok");
    }
}
