//! Service SAS verification: a client-minted container SAS checked field by field and by its HMAC.

use super::*;

/// Checks a client-minted read/list container SAS (§4.3): fields, validity window, the
/// protocol (`spr=https` cannot be used over http), then the HMAC over the 16-field
/// string-to-sign with `key`. `Err` carries the blob error code.
pub(super) fn verify_service_sas(
    incoming: &Incoming,
    key: &str,
    container: &str,
    sig: &str,
) -> Result<(), &'static str> {
    use hmac::{Hmac, Mac};
    let p = |n: &str| incoming.param(n).unwrap_or_default();
    if p("sr") != "c" || !p("sp").contains('r') {
        return Err("AuthorizationResourceTypeMismatch");
    }
    if p("spr") == "https" {
        return Err("AuthorizationProtocolMismatch");
    }
    let rfc3339 = &time::format_description::well_known::Rfc3339;
    let now = time::OffsetDateTime::now_utc();
    let start = time::OffsetDateTime::parse(&p("st"), rfc3339).map_err(|_| "AuthenticationFailed")?;
    let expiry = time::OffsetDateTime::parse(&p("se"), rfc3339).map_err(|_| "AuthenticationFailed")?;
    if start > now || expiry <= now || expiry - start > time::Duration::hours(24) {
        return Err("AuthenticationFailed");
    }
    let resource = format!("/blob/{ACCOUNT}/{container}");
    let to_sign = [
        p("sp"),
        p("st"),
        p("se"),
        resource,
        p("si"),
        p("sip"),
        p("spr"),
        p("sv"),
        p("sr"),
        String::new(),
        p("ses"),
        p("rscc"),
        p("rscd"),
        p("rsce"),
        p("rscl"),
        p("rsct"),
    ]
    .join("\n");
    let key = B64.decode(key).map_err(|_| "AuthenticationFailed")?;
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).map_err(|_| "AuthenticationFailed")?;
    mac.update(to_sign.as_bytes());
    let want = B64.encode(mac.finalize().into_bytes());
    if want == sig { Ok(()) } else { Err("AuthenticationFailed") }
}
