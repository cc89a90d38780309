//! Redaction of secrets (SAS signatures, tokens, keys) from any text before it is printed or logged.
//! Every URL or message that may carry one passes through here; nothing else knows the rules.

/// Query parameters whose values are secrets or reveal them.
const SECRET_PARAMS: &[&str] = &[
    "sig",
    "se",
    "st",
    "skoid",
    "sktid",
    "skt",
    "ske",
    "sks",
    "skv",
    "saoid",
    "suoid",
    "sasToken",
    "token",
    "code",
    "key",
    "X-Amz-Signature",
    "X-Amz-Credential",
    "X-Amz-Security-Token",
    "X-Goog-Signature",
    "X-Goog-Credential",
    "Signature",
    "client_secret",
    "access_token",
    "password",
];

/// Shortest value the registry of secrets takes: shorter strings would mangle ordinary output.
pub const MIN_SECRET_LEN: usize = 8;

/// Every secret value jobdl holds in this process (tokens, S3 secret keys and session tokens,
/// SAS signatures, passwords), registered when it is obtained. [`redact`] replaces each of them
/// wherever it appears in a printed string, whatever a server wrapped around it.
static SECRETS: std::sync::RwLock<Vec<String>> = std::sync::RwLock::new(Vec::new());

/// Remember `value` as a secret (and its percent-decoded and percent-encoded forms, as a server
/// may echo either). Values shorter than [`MIN_SECRET_LEN`] are ignored.
pub fn register_secret(value: &str) {
    let value = value.trim();
    if value.len() < MIN_SECRET_LEN {
        return;
    }
    let decoded = percent_encoding::percent_decode_str(value).decode_utf8_lossy().into_owned();
    let encoded = percent_encoding::utf8_percent_encode(value, ENCODED).to_string();
    let Ok(mut secrets) = SECRETS.write() else { return };
    for form in [value.to_string(), decoded, encoded] {
        if form.len() >= MIN_SECRET_LEN && !secrets.contains(&form) {
            secrets.push(form);
        }
    }
    // Longest first, so a secret that holds another is replaced whole.
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
}

/// How a query value is percent-encoded (everything but the unreserved characters).
const ENCODED: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// Register the values of the secret parameters of a URL query (`sig`, `X-Amz-Signature`, …).
pub fn register_query_secrets(query: &str) {
    for pair in query.split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = percent_encoding::percent_decode_str(name).decode_utf8_lossy();
        if SECRET_PARAMS.iter().any(|p| p.eq_ignore_ascii_case(&name)) && !NOT_SECRET_VALUES.contains(&&*name) {
            register_secret(value);
        }
    }
}

/// Parameters of [`SECRET_PARAMS`] whose values are dates, not secrets (redacted in URLs, but
/// not worth replacing everywhere).
const NOT_SECRET_VALUES: &[&str] = &["se", "st", "skt", "ske", "skv", "sks"];

/// `text` with every registered secret value ([`register_secret`]) replaced: the last step of
/// every document and line printed (JSON documents, paths a server named).
pub fn scrub(text: &str) -> String {
    redact_registered(text.to_string())
}

/// Replace every registered secret value in `text`.
fn redact_registered(text: String) -> String {
    let Ok(secrets) = SECRETS.read() else { return text };
    let mut out = text;
    for s in secrets.iter() {
        if out.contains(s.as_str()) {
            out = out.replace(s.as_str(), "REDACTED");
        }
    }
    out
}

/// Replace the values of secret query parameters anywhere in `text` with `REDACTED`, and every
/// registered secret value ([`register_secret`]).
///
/// Works on whole messages (not only URLs): any `name=value` where `name` is a secret parameter
/// and is preceded by `?`, `&`, start of text or whitespace, has its value (up to `&`, whitespace,
/// quote or end) replaced. Matching is case-insensitive on the name.
pub fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < text.len() {
        let boundary = i == 0
            || matches!(bytes[i - 1], b'?' | b'&' | b' ' | b'\t' | b'\n' | b'"' | b'\'' | b'(' | b'<' | b',' | b';');
        if boundary && let Some(name_len) = secret_name_at(&text[i..]) {
            out.push_str(&text[i..i + name_len + 1]);
            let mut j = i + name_len + 1;
            while j < text.len()
                && !matches!(bytes[j], b'&' | b' ' | b'\t' | b'\n' | b'"' | b'\'' | b')' | b'>' | b',' | b';')
                // A colon ends the value when the message goes on after it ("…sig=x: reset").
                && !(bytes[j] == b':' && bytes.get(j + 1).is_none_or(|b| b.is_ascii_whitespace()))
            {
                j += 1;
            }
            out.push_str("REDACTED");
            i = j;
            continue;
        }
        // Advance one UTF-8 character.
        let ch_len = text[i..].chars().next().map_or(1, char::len_utf8);
        out.push_str(&text[i..i + ch_len]);
        i += ch_len;
    }
    redact_registered(redact_bearer(&out))
}

/// If `s` starts with `<secret>=`, the length of `<secret>`.
fn secret_name_at(s: &str) -> Option<usize> {
    SECRET_PARAMS.iter().find_map(|p| {
        let n = p.len();
        (s.len() > n && s.as_bytes()[n] == b'=' && s[..n].eq_ignore_ascii_case(p)).then_some(n)
    })
}

/// Replace `Bearer <token>` and `Basic <credentials>` with `Bearer REDACTED` / `Basic REDACTED`.
fn redact_bearer(s: &str) -> String {
    redact_scheme(&redact_scheme(s, "Bearer "), "Basic ")
}

fn redact_scheme(s: &str, scheme: &str) -> String {
    let n = scheme.len();
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find(scheme) {
        out.push_str(&rest[..pos + n]);
        let after = &rest[pos + n..];
        let end = after.find(|c: char| c.is_whitespace() || c == '"' || c == '\'').unwrap_or(after.len());
        if end > 0 {
            out.push_str("REDACTED");
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// A URL for display: scheme, host, port and path, without user info or fragment, and with the
/// value of every secret query parameter replaced. The query is split on `&` exactly as a
/// server splits it, so a value is redacted whole whatever characters it holds.
pub fn url_for_display(url: &url::Url) -> String {
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.set_fragment(None);
    // Registered secrets are replaced inside the path and inside each query value, never across
    // the URL's punctuation: a replacement cannot merge two parameters or move the host.
    let path = redact_registered(u.path().to_string());
    let query = u.query().filter(|q| !q.is_empty()).map(redact_query);
    u.set_query(None);
    u.set_path("");
    let base = u.as_str().trim_end_matches('/');
    match query {
        Some(q) => redact_bearer(&format!("{base}{path}?{q}")),
        None => format!("{base}{path}"),
    }
}

/// `a=1&sig=x;y&b` → `a=1&sig=REDACTED&b`: a secret parameter's value is replaced up to the next
/// `&` (names compared case-insensitively, also in percent-encoded form).
fn redact_query(q: &str) -> String {
    q.split('&')
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let decoded = percent_encoding::percent_decode_str(name).decode_utf8_lossy();
            let secret = SECRET_PARAMS.iter().any(|p| p.eq_ignore_ascii_case(&decoded));
            if secret && !value.is_empty() {
                format!("{name}=REDACTED")
            } else {
                match pair.split_once('=') {
                    Some((name, value)) => format!("{name}={}", redact_registered(value.to_string())),
                    None => redact_registered(pair.to_string()),
                }
            }
        })
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_secrets_are_redacted_wherever_they_appear() {
        register_secret("tok-Zq81x/abc+def==");
        register_secret("short");
        register_query_secrets("sv=2025-11-05&se=2099-01-01&sig=s1gN%2Bxyz%3D&sp=rl");
        let echoed = "server said: invalid credential tok-Zq81x/abc+def== (decoded s1gN+xyz=, raw s1gN%2Bxyz%3D)";
        let out = redact(echoed);
        assert!(!out.contains("tok-Zq81x") && !out.contains("s1gN"), "{out}");
        assert_eq!(redact("a short note"), "a short note", "short values are not registered");
        assert!(redact("expires 2099-01-01").contains("2099-01-01"), "dates are not secrets");
        // Percent-encoded form of a registered value.
        assert!(!redact("tok-Zq81x%2Fabc%2Bdef%3D%3D").contains("Zq81x"));
    }

    #[test]
    fn sas_signature_and_expiry_are_redacted() {
        let s = "https://a.blob.core.windows.net/c/b?sv=2025-11-05&sr=b&sp=r&se=2026-01-01T00%3A00Z&sig=abc%2Bdef%3D";
        let r = redact(s);
        assert!(!r.contains("abc"), "{r}");
        assert!(r.contains("sig=REDACTED"));
        assert!(r.contains("se=REDACTED"));
        assert!(r.contains("sv=2025-11-05"));
        assert!(r.contains("sr=b"));
    }

    #[test]
    fn secrets_inside_messages_are_redacted() {
        let s = "error sending request for url (http://127.0.0.1:1/x?sig=SECRET&sp=r): reset";
        let r = redact(s);
        assert!(!r.contains("SECRET"), "{r}");
        assert!(r.contains("sp=r"));
        assert_eq!(redact("GET x?sig=abc: connection reset"), "GET x?sig=REDACTED: connection reset");
        assert_eq!(redact("x?sig=a:b"), "x?sig=REDACTED", "a colon inside the value is part of it");
        let b = redact("header Authorization: Bearer eyJ0eXAi.abc.def was sent");
        assert!(!b.contains("eyJ0"), "{b}");
        let b = redact("Authorization: Basic dXNlcjpwYXNz sent");
        assert!(!b.contains("dXNlcjpwYXNz") && b.contains("Basic REDACTED"), "{b}");
        for q in ["X-Goog-Signature=abc", "Signature=abc", "client_secret=abc", "password=abc"] {
            assert!(!redact(&format!("https://h/o?{q}&x=1")).contains("abc"), "{q}");
        }
    }

    #[test]
    fn sigv4_signatures_are_redacted() {
        let h = "Authorization: AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260115/us-east-1/s3/aws4_request, \
                 SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature=f0e8bdb87c964420e857bd35b5d6ed31";
        let r = redact(h);
        assert!(!r.contains("f0e8bdb8"), "{r}");
        assert!(r.contains("SignedHeaders=host;x-amz-content-sha256;x-amz-date"), "{r}");
        let u = url::Url::parse(
            "https://b.s3.us-east-1.amazonaws.com/k?X-Amz-Credential=AKID%2F2026&X-Amz-Security-Token=TOK&X-Amz-Signature=abc",
        )
        .unwrap();
        let d = url_for_display(&u);
        assert!(!d.contains("AKID") && !d.contains("TOK") && !d.contains("abc"), "{d}");
    }

    #[test]
    fn case_insensitive_names_and_no_false_positive() {
        assert!(!redact("x?SIG=topsecret").contains("topsecret"));
        // 'design=' must not be mistaken for 'sig='.
        assert_eq!(redact("design=ok"), "design=ok");
        assert_eq!(redact("plain text"), "plain text");
    }

    #[test]
    fn url_display_drops_secrets() {
        let u = url::Url::parse("https://user:pw@h.invalid/p?sig=zzz&sv=1#frag").unwrap();
        let d = url_for_display(&u);
        assert!(!d.contains("zzz") && !d.contains("pw") && !d.contains("frag"), "{d}");
    }

    #[test]
    fn url_display_redacts_whole_values() {
        // Found by tests/it/fuzz.rs: a text scan stopped at `;` or `'` and showed the rest.
        for (q, want) in [
            ("sig=abc;def&sv=1", "sig=REDACTED&sv=1"),
            ("sv=1&sig=ab'cd", "sv=1&sig=REDACTED"),
            ("%73ig=abc&x=1", "%73ig=REDACTED&x=1"),
            ("SIG=a&sig&sig=", "SIG=REDACTED&sig&sig="),
            ("design=ok&sp=r", "design=ok&sp=r"),
        ] {
            let u = url::Url::parse(&format!("https://h.invalid/p?{q}")).unwrap();
            assert_eq!(url_for_display(&u), format!("https://h.invalid/p?{want}"));
        }
    }
}
