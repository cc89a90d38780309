//! Bearer tokens for service calls: `JOBDL_ACCESS_TOKEN`, or a credential chain built from
//! `azure_identity` (environment service principal, workload identity, managed identity, Azure CLI,
//! Azure Developer CLI), with tokens cached per scope. Knows nothing about where tokens are sent.
use crate::error::Error;
use azure_core::credentials::TokenCredential;
use azure_core::http::{ClientOptions, Transport};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

/// The audience of Foundry project endpoint calls.
pub const FOUNDRY_SCOPE: &str = "https://ai.azure.com/.default";

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
    /// From `JOBDL_ACCESS_TOKEN` when set, else the credential chain sharing `client`.
    pub fn from_env(static_token: Option<String>, client: &reqwest::Client) -> TokenSource {
        match static_token.filter(|t| !t.trim().is_empty()) {
            Some(t) => TokenSource::Static(t.trim().to_string()),
            None => TokenSource::Chain(Arc::new(Chain::new(client))),
        }
    }

    /// Whether the static token is in use (errors mention it).
    pub fn is_static(&self) -> bool {
        matches!(self, TokenSource::Static(_))
    }

    /// A token for `scope`.
    pub async fn token(&self, scope: &str) -> Result<String, Error> {
        match self {
            TokenSource::Static(t) => Ok(t.clone()),
            TokenSource::Chain(c) => c.token(scope).await,
        }
    }
}

/// The credential chain with a per-scope cache.
pub struct Chain {
    creds: Vec<(&'static str, Arc<dyn TokenCredential>)>,
    /// Credentials that could not even be constructed, with why (for the error message).
    unavailable: Vec<String>,
    cache: Mutex<HashMap<String, (String, time::OffsetDateTime)>>,
}

impl Chain {
    /// Build every credential the environment allows, in the documented order.
    pub fn new(client: &reqwest::Client) -> Chain {
        let options =
            || ClientOptions { transport: Some(Transport::new(Arc::new(client.clone()))), ..Default::default() };
        let mut creds: Vec<(&'static str, Arc<dyn TokenCredential>)> = Vec::new();
        let mut unavailable = Vec::new();
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        if let (Some(tenant), Some(client_id), Some(secret)) =
            (env("AZURE_TENANT_ID"), env("AZURE_CLIENT_ID"), env("AZURE_CLIENT_SECRET"))
        {
            let o = azure_identity::ClientSecretCredentialOptions { client_options: options() };
            match azure_identity::ClientSecretCredential::new(&tenant, client_id, secret.into(), Some(o)) {
                Ok(c) => creds.push(("environment service principal", c)),
                Err(e) => unavailable.push(format!("environment service principal: {e}")),
            }
        }
        if env("AZURE_FEDERATED_TOKEN_FILE").is_some() {
            let o = azure_identity::WorkloadIdentityCredentialOptions {
                credential_options: azure_identity::ClientAssertionCredentialOptions { client_options: options() },
                ..Default::default()
            };
            match azure_identity::WorkloadIdentityCredential::new(Some(o)) {
                Ok(c) => creds.push(("workload identity", c)),
                Err(e) => unavailable.push(format!("workload identity: {e}")),
            }
        }
        if env("IDENTITY_ENDPOINT").is_some() || env("JOBDL_TRY_IMDS").is_some() {
            // IMDS is probed only when asked for (or on App Service style hosts): probing the
            // metadata address on a laptop costs seconds and would surprise users.
            let o =
                azure_identity::ManagedIdentityCredentialOptions { client_options: options(), ..Default::default() };
            match azure_identity::ManagedIdentityCredential::new(Some(o)) {
                Ok(c) => creds.push(("managed identity", c)),
                Err(e) => unavailable.push(format!("managed identity: {e}")),
            }
        }
        match azure_identity::AzureCliCredential::new(None) {
            Ok(c) => creds.push(("Azure CLI", c)),
            Err(e) => unavailable.push(format!("Azure CLI: {e}")),
        }
        match azure_identity::AzureDeveloperCliCredential::new(None) {
            Ok(c) => creds.push(("Azure Developer CLI", c)),
            Err(e) => unavailable.push(format!("Azure Developer CLI: {e}")),
        }
        Chain { creds, unavailable, cache: Mutex::new(HashMap::new()) }
    }

    async fn token(&self, scope: &str) -> Result<String, Error> {
        let mut cache = self.cache.lock().await;
        let now = time::OffsetDateTime::now_utc();
        if let Some((tok, exp)) = cache.get(scope)
            && *exp - now > time::Duration::minutes(5)
        {
            return Ok(tok.clone());
        }
        let mut tried = self.unavailable.clone();
        for (name, cred) in &self.creds {
            match tokio::time::timeout(CREDENTIAL_TIMEOUT, cred.get_token(&[scope], None)).await {
                Ok(Ok(t)) => {
                    crate::log::log(1, format!("got a token for {scope} from {name}"));
                    let tok = t.token.secret().to_string();
                    cache.insert(scope.to_string(), (tok.clone(), t.expires_on));
                    return Ok(tok);
                }
                Ok(Err(e)) => tried.push(format!("{name}: {}", first_line(&e.to_string()))),
                Err(_) => tried.push(format!("{name}: timed out after {}s", CREDENTIAL_TIMEOUT.as_secs())),
            }
        }
        Err(Error::Auth {
            message: format!("no Azure credential could get a token for {scope}:\n  {}", tried.join("\n  ")),
            hint: "sign in with `az login` (or `azd auth login`), set AZURE_TENANT_ID/AZURE_CLIENT_ID/AZURE_CLIENT_SECRET, \
                   or pass a token in JOBDL_ACCESS_TOKEN"
                .into(),
        })
    }
}

fn first_line(s: &str) -> String {
    crate::redact::redact(s.lines().next().unwrap_or(""))
}
