//! The blob role: a path-style account (`/devstoreaccount1/<container>`) with signature or bearer
//! checks, `List Blobs` pages and ranged, conditional `Get Blob`.

use super::*;

/// The decoded values of every signature the emulator issues.
pub(super) fn issued_sigs() -> [String; 4] {
    [CONTAINER_SIG, BLOB_SIG, PREFIX_CONTENT_SIG, PATH_CONTENT_SIG].map(form_decode)
}

pub(super) fn form_decode(raw: &str) -> String {
    url::form_urlencoded::parse(format!("x={raw}").as_bytes()).next().map(|(_, v)| v.into_owned()).unwrap_or_default()
}

pub(super) fn blob_role(shared: &Shared, incoming: &Incoming, rest: &str, fault: Option<&Fault>) -> Reply {
    let (container_raw, name_raw) = rest.split_once('/').unwrap_or((rest, ""));
    let container = decode(container_raw);
    // Any non-empty sig is accepted, except a mangled copy of one the emulator issued
    // (a client that decoded and re-encoded the SAS), or a client-minted one that does not verify
    // against the world's account key.
    match incoming.raw_param("sig").filter(|s| !s.is_empty()) {
        Some(_) if shared.world().key_auth_disabled.contains(&container) => {
            return blob_error(StatusCode::FORBIDDEN, "KeyBasedAuthenticationNotPermitted");
        }
        Some(sig) => {
            let sig = form_decode(sig);
            if sig.starts_with("FAKESIG") {
                if !issued_sigs().contains(&sig) {
                    return blob_error(StatusCode::FORBIDDEN, "AuthenticationFailed");
                }
            } else if let Some(key) = &shared.world().sas_key
                && let Err(code) = verify_service_sas(incoming, key, &container, &sig)
            {
                return blob_error(StatusCode::FORBIDDEN, code);
            }
        }
        None => {
            match shared.bearer(incoming) {
                _ if !shared.world().blob_bearer => return blob_error(StatusCode::FORBIDDEN, "AuthenticationFailed"),
                Bearer::Valid => {}
                Bearer::Expired => return blob_error(StatusCode::UNAUTHORIZED, "InvalidAuthenticationInfo"),
                Bearer::Invalid => return blob_error(StatusCode::FORBIDDEN, "AuthenticationFailed"),
            }
            if incoming.header("x-ms-version").is_none() {
                return blob_error(StatusCode::BAD_REQUEST, "MissingRequiredHeader");
            }
            if shared.world().bearer_denied.contains(&container) {
                return blob_error(StatusCode::FORBIDDEN, "AuthorizationPermissionMismatch");
            }
        }
    }
    if name_raw.is_empty() {
        let listing = incoming.param("restype").as_deref() == Some("container")
            && incoming.param("comp").as_deref() == Some("list");
        if incoming.method != Method::GET || !listing {
            return blob_error(StatusCode::BAD_REQUEST, "InvalidQueryParameterValue");
        }
        return list_blobs(shared, incoming, &container);
    }
    let name = decode(name_raw);
    match incoming.method {
        Method::GET | Method::HEAD => get_blob(shared, incoming, &container, &name, fault),
        _ => blob_error(StatusCode::METHOD_NOT_ALLOWED, "UnsupportedHttpVerb"),
    }
}

pub(super) fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            _ => out.push(c),
        }
    }
    out
}

pub(super) fn xml_safe(text: &str) -> bool {
    text.chars()
        .all(|c| !matches!(c, '\u{0}'..='\u{8}' | '\u{b}' | '\u{c}' | '\u{e}'..='\u{1f}' | '\u{fffe}' | '\u{ffff}'))
}

pub(super) fn list_blobs(shared: &Shared, incoming: &Incoming, container: &str) -> Reply {
    if incoming.param("sr").as_deref() == Some("b") {
        return blob_error(StatusCode::FORBIDDEN, "AuthorizationResourceTypeMismatch");
    }
    if incoming.param("sp").is_some_and(|sp| !sp.contains('l')) {
        return blob_error(StatusCode::FORBIDDEN, "AuthorizationPermissionMismatch");
    }
    let Some(blobs) = shared.world().containers.get(container) else {
        return blob_error(StatusCode::NOT_FOUND, "ContainerNotFound");
    };
    let prefix = incoming.param("prefix").unwrap_or_default();
    let max_results = match incoming.param("maxresults").map(|m| m.parse::<usize>()) {
        None => 5000,
        Some(Ok(n)) if n > 0 => n,
        Some(_) => return blob_error(StatusCode::BAD_REQUEST, "OutOfRangeQueryParameterValue"),
    };
    let marker = incoming.param("marker").unwrap_or_default();
    let start = if marker.is_empty() {
        prefix.clone()
    } else {
        let decoded =
            marker.strip_prefix("2!").and_then(|m| B64.decode(m).ok()).and_then(|m| String::from_utf8(m).ok());
        match decoded {
            Some(name) => name.max(prefix.clone()),
            None => return blob_error(StatusCode::BAD_REQUEST, "OutOfRangeInput"),
        }
    };
    let size = max_results.min(LIST_PAGE_MAX);
    let mut names = blobs.range(start..).take_while(|(name, _)| name.starts_with(&prefix));
    let page: Vec<(&String, &BlobFixture)> = names.by_ref().take(size).collect();
    let next_marker = names.next().map(|(name, _)| format!("2!{}", B64.encode(name))).unwrap_or_default();

    let mut xml = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\
         <EnumerationResults ServiceEndpoint=\"{}/{ACCOUNT}/\" ContainerName=\"{}\">\
         <Prefix>{}</Prefix><Marker>{}</Marker><MaxResults>{max_results}</MaxResults><Blobs>",
        xml_escape(&shared.base),
        xml_escape(container),
        xml_escape(&prefix),
        xml_escape(&marker),
    );
    for (name, blob) in page {
        let name_xml = if xml_safe(name) {
            format!("<Name>{}</Name>", xml_escape(name))
        } else {
            let encoded = utf8_percent_encode(name, SEGMENT).to_string();
            format!("<Name Encoded=\"true\">{encoded}</Name>")
        };
        let md5 = shared
            .advertised_md5(container, name, blob)
            .map(|m| format!("<Content-MD5>{m}</Content-MD5>"))
            .unwrap_or_else(|| "<Content-MD5 />".to_string());
        let encoding = blob
            .content_encoding
            .as_ref()
            .map(|e| format!("<Content-Encoding>{}</Content-Encoding>", xml_escape(e)))
            .unwrap_or_default();
        xml.push_str(&format!(
            "<Blob>{name_xml}<Properties><Creation-Time>{CREATED}</Creation-Time>\
             <Last-Modified>{LAST_MODIFIED}</Last-Modified><Etag>{}</Etag>\
             <Content-Length>{}</Content-Length><Content-Type>application/octet-stream</Content-Type>\
             {encoding}{md5}<BlobType>BlockBlob</BlobType><AccessTier>Hot</AccessTier>\
             </Properties><Metadata /></Blob>",
            xml_escape(&blob.etag),
            blob.len(),
        ));
    }
    xml.push_str(&format!("</Blobs><NextMarker>{}</NextMarker></EnumerationResults>", xml_escape(&next_marker)));
    Reply::bytes(StatusCode::OK, "application/xml", xml.into_bytes())
}

/// Parses `bytes=a-b` or `bytes=a-` into (first, optional last).
pub(super) fn parse_range(value: &str) -> Option<(u64, Option<u64>)> {
    let spec = value.trim().strip_prefix("bytes=")?;
    let (first, last) = spec.split_once('-')?;
    let first = first.trim().parse().ok()?;
    let last = match last.trim() {
        "" => None,
        l => Some(l.parse().ok()?),
    };
    match last {
        Some(l) if l < first => None,
        _ => Some((first, last)),
    }
}

pub(super) fn etag_matches(header: &str, etag: &str) -> bool {
    header.split(',').any(|candidate| {
        let candidate = candidate.trim();
        candidate == "*" || candidate.trim_matches('"') == etag
    })
}

pub(super) fn get_blob(
    shared: &Shared,
    incoming: &Incoming,
    container: &str,
    name: &str,
    fault: Option<&Fault>,
) -> Reply {
    let Some(blob) = shared.world().blob(container, name) else {
        return blob_error(StatusCode::NOT_FOUND, "BlobNotFound");
    };
    let wrong_etag = fault == Some(&Fault::WrongEtag);
    let etag = if wrong_etag {
        format!("0x8DEFFFF{}", md5_hex(blob.etag.as_bytes())[..8].to_uppercase())
    } else {
        blob.etag.clone()
    };
    if !wrong_etag
        && let Some(if_match) = incoming.header("if-match")
        && !etag_matches(&if_match, &blob.etag)
    {
        return blob_error(StatusCode::PRECONDITION_FAILED, "ConditionNotMet");
    }
    let size = blob.len();
    let range = if incoming.method == Method::HEAD || fault == Some(&Fault::IgnoreRange) {
        None
    } else {
        match incoming.range() {
            None => None,
            Some(value) => match parse_range(&value) {
                Some(range) => Some(range),
                None => return blob_error(StatusCode::BAD_REQUEST, "InvalidHeaderValue"),
            },
        }
    };
    let md5 = shared.advertised_md5(container, name, blob);
    let (status, start, end) = match range {
        None => (StatusCode::OK, 0, size),
        Some((first, _)) if first >= size => {
            return blob_error(StatusCode::RANGE_NOT_SATISFIABLE, "InvalidRange")
                .header("content-range", format!("bytes */{size}"));
        }
        Some((first, last)) => {
            let end = last.map_or(size, |l| (l + 1).min(size));
            (StatusCode::PARTIAL_CONTENT, first, end)
        }
    };
    let mut reply = Reply {
        status,
        headers: vec![
            ("content-type", "application/octet-stream".into()),
            ("etag", format!("\"{etag}\"")),
            ("last-modified", LAST_MODIFIED.into()),
            ("accept-ranges", "bytes".into()),
            ("x-ms-blob-type", "BlockBlob".into()),
            ("x-ms-version", "2025-11-05".into()),
            ("x-ms-creation-time", CREATED.into()),
        ],
        len: end - start,
        body: blob_stream(blob, start, end),
    };
    if let Some(encoding) = &blob.content_encoding {
        reply = reply.header("content-encoding", encoding.clone());
    }
    if status == StatusCode::PARTIAL_CONTENT {
        reply = reply.header("content-range", format!("bytes {start}-{}/{size}", end - 1));
        if let Some(md5) = md5 {
            reply = reply.header("x-ms-blob-content-md5", md5);
        }
    } else if let Some(md5) = md5 {
        reply = reply.header("content-md5", md5);
    }
    reply
}

/// Bytes `[start, end)` of a blob in 64 KiB pieces, generated as they are sent.
pub(super) fn blob_stream(blob: &BlobFixture, start: u64, end: u64) -> BodyStream {
    match &blob.content {
        Content::Bytes(data) => {
            let bytes = Bytes::copy_from_slice(&data[start as usize..end as usize]);
            let pieces: Vec<io::Result<Bytes>> = (0..bytes.len())
                .step_by(PIECE as usize)
                .map(|at| Ok(bytes.slice(at..bytes.len().min(at + PIECE as usize))))
                .collect();
            stream::iter(pieces).boxed()
        }
        Content::Generated { seed, .. } => {
            let seed = *seed;
            stream::unfold(start, move |pos| async move {
                if pos >= end {
                    return None;
                }
                let n = PIECE.min(end - pos);
                let piece = super::super::world::gen_bytes(seed, pos, n as usize);
                Some((Ok(Bytes::from(piece)), pos + n))
            })
            .boxed()
        }
    }
}
