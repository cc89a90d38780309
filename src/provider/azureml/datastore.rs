//! Datastores (docs/azure-api.md §3.8, §3.9, §4.3): the datastore GET, `listSecrets`, and how each
//! credential type reaches the blob service — a service-issued SAS, a read/list container SAS
//! minted here from an account key (never printed, kept only in memory), or a storage bearer
//! token for identity-based datastores. Results are cached per datastore for the run.
use super::uri::WorkspaceRef;
use super::{AzureMl, DATASTORE_API_VERSION, enc};
use crate::blob::{ContainerRef, X_MS_VERSION};
use crate::provider::OutputError;
use crate::provider::foundry::{get_ci, str_ci};
use crate::transfer::{Refresher, UrlRefresher};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use serde_json::Value;
use std::sync::Arc;
use time::OffsetDateTime;
use url::Url;

/// Minted SAS: valid from 5 minutes ago (clock skew) ...
const MINT_BACKDATE: time::Duration = time::Duration::minutes(5);
/// ... for 60 minutes ...
const MINT_VALIDITY: time::Duration = time::Duration::minutes(60);
/// ... and minted again when fewer than 5 minutes remain.
const MINT_RENEW: time::Duration = time::Duration::minutes(5);

/// An account key: Base64-decoded bytes that never appear in `Debug` output or messages.
#[derive(Clone)]
pub struct AccountKey(Arc<Vec<u8>>);

impl std::fmt::Debug for AccountKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AccountKey(<redacted>)")
    }
}

impl AccountKey {
    /// Decode a Base64 account key.
    pub fn from_base64(key: &str) -> Result<Self, String> {
        crate::redact::register_secret(key);
        B64.decode(key.trim())
            .ok()
            .filter(|k| !k.is_empty())
            .map(|k| AccountKey(Arc::new(k)))
            .ok_or_else(|| "the account key returned by listSecrets is not valid Base64".to_string())
    }
}

/// `2026-01-15T10:00:00Z`
fn sas_time(t: OffsetDateTime) -> String {
    let fmt = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    t.to_offset(time::UtcOffset::UTC).format(&fmt).unwrap_or_default()
}

/// The service-SAS string-to-sign of version 2020-12-06 and later (§4.3): 16 fields joined by
/// `\n`, no trailing newline; unused fields are empty.
pub fn sas_string_to_sign(sp: &str, st: &str, se: &str, account: &str, container: &str, spr: &str) -> String {
    let resource = format!("/blob/{account}/{container}");
    [sp, st, se, &resource, "", "", spr, X_MS_VERSION, "c", "", "", "", "", "", "", ""].join("\n")
}

/// A read/list container SAS query (`sv`, `st`, `se`, `sr=c`, `sp=rl`, `spr`, `sig`) valid from
/// `now - 5 min` to `now + 60 min`. `https` false omits `spr` (plain-http loopback emulators).
pub fn mint_container_sas(
    key: &AccountKey,
    account: &str,
    container: &str,
    now: OffsetDateTime,
    https: bool,
) -> String {
    let (st, se) = (sas_time(now - MINT_BACKDATE), sas_time(now + MINT_VALIDITY));
    let spr = if https { "https" } else { "" };
    let to_sign = sas_string_to_sign("rl", &st, &se, account, container, spr);
    // HMAC accepts keys of any length, so this cannot fail; an empty signature would be refused.
    let sig = match Hmac::<sha2::Sha256>::new_from_slice(&key.0) {
        Ok(mut mac) => {
            mac.update(to_sign.as_bytes());
            B64.encode(mac.finalize().into_bytes())
        }
        Err(_) => String::new(),
    };
    let e = crate::blob::encode_component;
    let mut q = format!("sv={X_MS_VERSION}&st={}&se={}&sr=c&sp=rl", e(&st), e(&se));
    if https {
        q.push_str("&spr=https");
    }
    q.push_str(&format!("&sig={}", e(&sig)));
    crate::redact::register_query_secrets(&q);
    q
}

/// How requests to a datastore's container are authorised.
#[derive(Clone, Debug)]
pub enum StoreAuth {
    /// The SAS on the container (service-issued, or from a blob URL).
    Sas,
    /// A SAS minted from the account key (on the container), renewed before it expires.
    Minted {
        /// The key.
        key: AccountKey,
        /// When the current SAS expires.
        expires: OffsetDateTime,
    },
    /// `Authorization: Bearer <storage token>`.
    Bearer,
}

/// A datastore's container and how to reach it.
#[derive(Clone, Debug)]
pub struct Store {
    /// Datastore name (or the URL, for blob URLs), for messages.
    pub name: String,
    /// The container (its `sas` set in the SAS modes).
    pub container: ContainerRef,
    /// How requests are authorised.
    pub auth: StoreAuth,
    /// `credentials.credentialsType` verbatim (`AccountKey`, `Sas`, `None`, ...).
    pub cred_type: String,
    /// Whether bearer mode is a fallback (listSecrets refused, or the account refused key-based
    /// access).
    pub fallback: bool,
}

/// What jobdl reads from a datastore GET.
#[derive(Debug, Clone, PartialEq)]
pub struct DatastoreInfo {
    /// `datastoreType`.
    pub kind: String,
    /// `accountName`.
    pub account: String,
    /// `containerName` (`filesystem` for ADLS Gen2).
    pub container: String,
    /// `endpoint` (storage suffix), informational.
    pub endpoint: Option<String>,
    /// `credentials.credentialsType`.
    pub cred_type: String,
}

/// Datastore types read through the blob endpoint.
const SUPPORTED_KINDS: &[&str] = &["AzureBlob", "AzureDataLakeGen2"];

/// Parse a datastore GET response.
pub fn parse_datastore(name: &str, v: &Value) -> Result<DatastoreInfo, String> {
    let props = get_ci(v, "properties").ok_or_else(|| format!("datastore '{name}': response has no properties"))?;
    let kind = str_ci(props, "datastoreType").unwrap_or("").to_string();
    if !SUPPORTED_KINDS.iter().any(|k| k.eq_ignore_ascii_case(&kind)) {
        return Err(format!(
            "datastore '{name}' has type '{kind}', which jobdl does not support (supported: {})",
            SUPPORTED_KINDS.join(", ")
        ));
    }
    let account =
        str_ci(props, "accountName").ok_or_else(|| format!("datastore '{name}': no accountName"))?.to_string();
    let container = str_ci(props, "containerName")
        .or_else(|| str_ci(props, "filesystem"))
        .ok_or_else(|| format!("datastore '{name}': no containerName"))?
        .to_string();
    let cred_type =
        get_ci(props, "credentials").and_then(|c| str_ci(c, "credentialsType")).unwrap_or("None").to_string();
    Ok(DatastoreInfo { kind, account, container, endpoint: str_ci(props, "endpoint").map(str::to_string), cred_type })
}

/// A secret from `listSecrets`.
#[derive(Debug)]
enum Secret {
    Sas(String),
    Key(AccountKey),
}

impl AzureMl {
    /// The datastore `ds` of workspace `ws`, from the cache or the service. A minted SAS close
    /// to expiry is minted again.
    pub(super) async fn store(&self, ws: &WorkspaceRef, ds: &str) -> Result<Store, OutputError> {
        let key = (ws.clone(), ds.to_string());
        let cached = self.inner.stores.lock().await.get(&key).cloned();
        if let Some(mut s) = cached {
            if let StoreAuth::Minted { key: k, expires } = &s.auth
                && *expires - OffsetDateTime::now_utc() < MINT_RENEW
            {
                let now = OffsetDateTime::now_utc();
                s.container.sas = Some(mint_container_sas(
                    k,
                    &s.container.account,
                    &s.container.container,
                    now,
                    self.https_storage(),
                ));
                s.auth = StoreAuth::Minted { key: k.clone(), expires: now + MINT_VALIDITY };
                self.inner.stores.lock().await.insert(key, s.clone());
            }
            return Ok(s);
        }
        let s = self.fetch_store(ws, ds).await?;
        self.inner.stores.lock().await.insert(key, s.clone());
        Ok(s)
    }

    /// Whether storage requests go over https (false only for an http storage endpoint override).
    pub(super) fn https_storage(&self) -> bool {
        self.inner.storage_endpoint.as_ref().is_none_or(|u| u.scheme() == "https")
    }

    async fn fetch_store(&self, ws: &WorkspaceRef, ds: &str) -> Result<Store, OutputError> {
        let own = *ws == self.inner.workspace;
        let where_ = if own { String::new() } else { format!(" in workspace '{}'", ws.workspace) };
        let url = self.arm_url(ws, &format!("datastores/{}", enc(ds)), DATASTORE_API_VERSION, &[]);
        let v = match self.arm(reqwest::Method::GET, url, None).await {
            Ok(v) => v,
            Err(e) if own && matches!(e.status(), Some(401 | 403)) => {
                return Err(OutputError::Fatal(self.arm_fatal(e, &format!("datastore '{ds}'"))));
            }
            Err(e) if e.status() == Some(404) => {
                return Err(OutputError::Failed(format!("datastore '{ds}' not found{where_}")));
            }
            Err(e) => return Err(OutputError::Failed(format!("datastore '{ds}'{where_}: {e}"))),
        };
        let info = parse_datastore(ds, &v).map_err(OutputError::Failed)?;
        let suffix = self.inner.cloud.storage_suffix();
        if let Some(ep) = info.endpoint.as_deref()
            && !ep.eq_ignore_ascii_case(suffix)
        {
            crate::log::log(
                1,
                format!("datastore '{ds}' names endpoint '{ep}'; using the {} suffix '{suffix}'", self.inner.cloud),
            );
        }
        let mut fallback = false;
        let secret = if ["Sas", "AccountKey"].iter().any(|t| t.eq_ignore_ascii_case(&info.cred_type)) {
            match self.list_secrets(ws, ds).await {
                Ok(s) => Some(s),
                Err(e) if matches!(e.status(), Some(401 | 403 | 404)) => {
                    crate::log::log(
                        1,
                        format!("listSecrets of datastore '{ds}' refused ({e}); trying your own storage access"),
                    );
                    fallback = true;
                    None
                }
                Err(e) => return Err(OutputError::Failed(format!("datastore '{ds}'{where_}: listSecrets: {e}"))),
            }
        } else {
            None
        };
        let endpoint = self.inner.storage_endpoint.as_ref();
        let build = |sas: Option<String>| {
            ContainerRef::for_account(self.inner.cloud, endpoint, &info.account, &info.container, sas)
                .map_err(|e| OutputError::Failed(format!("datastore '{ds}': {e}")))
        };
        let (container, auth) = match secret {
            Some(Secret::Sas(sas)) => (build(Some(sas))?, StoreAuth::Sas),
            Some(Secret::Key(key)) => {
                let now = OffsetDateTime::now_utc();
                let sas = mint_container_sas(&key, &info.account, &info.container, now, self.https_storage());
                (build(Some(sas))?, StoreAuth::Minted { key, expires: now + MINT_VALIDITY })
            }
            None => (build(None)?, StoreAuth::Bearer),
        };
        self.inner
            .allow
            .check_storage(&container.container_url())
            .map_err(|e| OutputError::Failed(format!("datastore '{ds}': storage host not allowed: {e}")))?;
        Ok(Store { name: ds.to_string(), container, auth, cred_type: info.cred_type, fallback })
    }

    async fn list_secrets(&self, ws: &WorkspaceRef, ds: &str) -> Result<Secret, crate::http::CallError> {
        let url = self.arm_url(ws, &format!("datastores/{}/listSecrets", enc(ds)), DATASTORE_API_VERSION, &[]);
        let body = serde_json::json!({"expirableSecret": true, "expireAfterHours": 1});
        let v = self.arm(reqwest::Method::POST, url.clone(), Some(body)).await?;
        let decode = |message: &str| crate::http::CallError::Decode {
            url: crate::redact::url_for_display(&url),
            message: message.to_string(),
        };
        let kind = str_ci(&v, "secretsType").unwrap_or("");
        if kind.eq_ignore_ascii_case("Sas") {
            let sas = str_ci(&v, "sasToken").ok_or_else(|| decode("no sasToken"))?;
            Ok(Secret::Sas(sas.trim().trim_start_matches('?').to_string()))
        } else if kind.eq_ignore_ascii_case("AccountKey") {
            let key = str_ci(&v, "key").ok_or_else(|| decode("no key"))?;
            AccountKey::from_base64(key).map(Secret::Key).map_err(|m| decode(&m))
        } else {
            Err(decode(&format!("unsupported secretsType '{kind}'")))
        }
    }

    /// A refresher that mints a fresh SAS for one blob of an account-key datastore.
    pub(super) fn mint_refresher(&self, store: &Store, blob: &str) -> Option<Refresher> {
        let StoreAuth::Minted { key, .. } = &store.auth else { return None };
        Some(Refresher(Arc::new(MintRefresher {
            key: key.clone(),
            container: store.container.clone(),
            blob: blob.to_string(),
            https: self.https_storage(),
        })))
    }
}

/// Mints a fresh SAS for one blob after a 403 (the minted one expired during a long run).
struct MintRefresher {
    key: AccountKey,
    container: ContainerRef,
    blob: String,
    https: bool,
}

impl UrlRefresher for MintRefresher {
    fn refresh(&self) -> futures_util::future::BoxFuture<'_, Option<Url>> {
        Box::pin(async move {
            let mut c = self.container.clone();
            c.sas =
                Some(mint_container_sas(&self.key, &c.account, &c.container, OffsetDateTime::now_utc(), self.https));
            Some(c.blob_url(&self.blob))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Azurite's documented development account key.
    const DEV_KEY: &str = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

    fn at(s: &str) -> OffsetDateTime {
        OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).unwrap()
    }

    #[test]
    fn string_to_sign_layout() {
        let s = sas_string_to_sign("rl", "2026-01-15T09:55:00Z", "2026-01-15T11:00:00Z", "acct", "c", "https");
        assert_eq!(
            s,
            "rl\n2026-01-15T09:55:00Z\n2026-01-15T11:00:00Z\n/blob/acct/c\n\n\nhttps\n2025-11-05\nc\n\n\n\n\n\n\n"
        );
        assert_eq!(s.split('\n').count(), 16);
        assert!(!s.ends_with("\n\n\n\n\n\n\n\n\n\n"));
    }

    #[test]
    fn minted_sas_matches_a_known_vector() {
        // Expected signatures computed independently (Python hmac/hashlib) over the same fields.
        let key = AccountKey::from_base64(DEV_KEY).unwrap();
        let now = at("2026-01-15T10:00:00Z");
        let q = mint_container_sas(&key, "devstoreaccount1", "azureml", now, false);
        assert_eq!(
            q,
            "sv=2025-11-05&st=2026-01-15T09%3A55%3A00Z&se=2026-01-15T11%3A00%3A00Z&sr=c&sp=rl&sig=dyLULn6cdqBIimoqr5dJVpmr3gLHysn%2Fr6aoS16o3%2BE%3D"
        );
        let q = mint_container_sas(&key, "wsstore01", "azureml", now, true);
        assert!(q.contains("&spr=https&"), "{q}");
        assert!(q.ends_with("&sig=pYuDuV2H2cp0zo7hnATQEptG6K7zBA15mFHRSBsYG%2B8%3D"), "{q}");
    }

    #[test]
    fn keys_are_never_shown() {
        let key = AccountKey::from_base64(DEV_KEY).unwrap();
        assert!(!format!("{key:?}").contains("Eby8"));
        assert!(AccountKey::from_base64("not base64!").is_err());
        assert!(AccountKey::from_base64("").is_err());
    }

    #[test]
    fn datastore_parsing() {
        let v = serde_json::json!({"properties": {"datastoreType": "AzureBlob", "accountName": "wsstore01",
            "containerName": "azureml", "endpoint": "core.windows.net",
            "credentials": {"credentialsType": "AccountKey", "secrets": {"secretsType": "AccountKey"}}}});
        let d = parse_datastore("s", &v).unwrap();
        assert_eq!(
            (d.account.as_str(), d.container.as_str(), d.cred_type.as_str()),
            ("wsstore01", "azureml", "AccountKey")
        );
        let gen2 = serde_json::json!({"properties": {"datastoreType": "AzureDataLakeGen2", "accountName": "lake01",
            "filesystem": "fs1", "credentials": {"credentialsType": "None"}}});
        let d = parse_datastore("g", &gen2).unwrap();
        assert_eq!((d.container.as_str(), d.cred_type.as_str()), ("fs1", "None"));
        let file = serde_json::json!({"properties": {"datastoreType": "AzureFile", "accountName": "a01", "fileShareName": "s"}});
        let e = parse_datastore("f", &file).unwrap_err();
        assert!(e.contains("AzureFile"), "{e}");
        assert!(parse_datastore("x", &serde_json::json!({})).is_err());
    }
}
