//! Parsing one ListObjectsV2 response page (docs/kfp-s3-api.md §6.1). Pure: bytes in, data out.
//!
//! The XML is hostile input: never panics, never expands custom entities. A page that is not
//! well-formed fails as a whole (the listing cannot be trusted); one odd object — a key that does
//! not decode, is not UTF-8, has no valid `Size` — fails alone and the rest of the page is kept.
//! Path safety (`..`, empty segments, control characters) is not judged here: keys are returned
//! exactly as stored, for the caller's path checks.
use crate::http::MAX_XML_DEPTH;
use quick_xml::events::Event;
use quick_xml::reader::Reader;

/// Largest object size believed (1 PiB); anything larger is a hostile or broken server.
pub const MAX_OBJECT_SIZE: u64 = 1 << 50;

/// One listed object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Object {
    /// The key, decoded (XML, then `encoding-type=url`).
    pub key: String,
    /// `Size`.
    pub size: u64,
    /// `ETag` with its quotes removed, when listed.
    pub etag: Option<String>,
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListPage {
    /// The objects of this page, in service order (folder placeholders skipped).
    pub objects: Vec<S3Object>,
    /// (key as shown, reason) of listed objects that cannot be downloaded.
    pub bad: Vec<(String, String)>,
    /// The token for the next page; `None` when this is the last page.
    pub next_token: Option<String>,
}

/// Fields collected for the `<Contents>` being read.
#[derive(Default)]
struct Pending {
    key: Option<String>,
    size: Option<String>,
    etag: Option<String>,
}

/// Parse one ListObjectsV2 page. Element names are matched by local name (the S3 namespace or
/// none); unknown elements are ignored and order does not matter (`EncodingType` may follow the
/// `Contents`). Errors on malformed or truncated XML, a document that is not `<ListBucketResult>`,
/// a truncated page without a continuation token, and elements nested deeper than
/// [`MAX_XML_DEPTH`]. Linear in the input: each event costs O(1).
pub fn parse_list_page(xml: &[u8]) -> Result<ListPage, String> {
    let mut reader = Reader::from_reader(xml);
    reader.config_mut().check_end_names = true;
    let bad_xml = |e: &dyn std::fmt::Display| format!("malformed ListObjectsV2 XML: {e}");

    let mut stack: Vec<String> = Vec::new();
    let mut text = String::new();
    let mut pending: Option<Pending> = None;
    let mut raw: Vec<Pending> = Vec::new();
    let (mut truncated, mut token, mut encoding) = (None::<String>, None::<String>, None::<String>);
    let mut saw_root = false;

    let too_deep = || {
        format!(
            "malformed ListObjectsV2 XML: elements nested more than {MAX_XML_DEPTH} deep (a real page nests 3); refusing the page"
        )
    };
    loop {
        let event = reader.read_event().map_err(|e| bad_xml(&e))?;
        if matches!(event, Event::Start(_) | Event::Empty(_)) && stack.len() >= MAX_XML_DEPTH {
            return Err(too_deep());
        }
        match event {
            Event::Start(e) => {
                let name = String::from_utf8(e.local_name().as_ref().to_vec()).map_err(|_| bad_xml(&"element name"))?;
                if stack.is_empty() {
                    if name != "ListBucketResult" {
                        return Err(format!("not a ListObjectsV2 response (root element <{}>)", name.escape_debug()));
                    }
                    saw_root = true;
                }
                if stack.len() == 1 && name == "Contents" {
                    pending = Some(Pending::default());
                }
                stack.push(name);
                text.clear();
            }
            Event::Empty(e) => {
                if stack.is_empty() {
                    return Err("not a ListObjectsV2 response (empty document element)".into());
                }
                // `<Key/>`, `<NextContinuationToken/>`: an empty value.
                let name = String::from_utf8(e.local_name().as_ref().to_vec()).map_err(|_| bad_xml(&"element name"))?;
                stack.push(name);
                close(&mut stack, String::new(), &mut pending, &mut raw, &mut truncated, &mut token, &mut encoding);
            }
            Event::End(_) => {
                let value = std::mem::take(&mut text);
                close(&mut stack, value, &mut pending, &mut raw, &mut truncated, &mut token, &mut encoding);
            }
            Event::Text(t) => text.push_str(&t.xml10_content().map_err(|e| bad_xml(&e))?),
            Event::CData(c) => text.push_str(&c.decode().map_err(|e| bad_xml(&e))?),
            Event::GeneralRef(r) => {
                if let Some(ch) = r.resolve_char_ref().map_err(|e| bad_xml(&e))? {
                    text.push(ch);
                } else {
                    let name = r.decode().map_err(|e| bad_xml(&e))?;
                    match quick_xml::escape::resolve_predefined_entity(&name) {
                        Some(v) => text.push_str(v),
                        None => return Err(bad_xml(&format!("unknown entity '&{}';", name.escape_debug()))),
                    }
                }
            }
            Event::Eof => break,
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) | Event::DocType(_) => {}
        }
    }
    if !stack.is_empty() {
        return Err("malformed ListObjectsV2 XML: the document is truncated".into());
    }
    if !saw_root {
        return Err("not a ListObjectsV2 response (no <ListBucketResult> element)".into());
    }
    let url_encoded = encoding.as_deref().is_some_and(|e| e.trim().eq_ignore_ascii_case("url"));
    let mut page = ListPage::default();
    for p in raw {
        match finish(p, url_encoded) {
            Ok(Some(o)) => page.objects.push(o),
            Ok(None) => {}
            Err(bad) => page.bad.push(bad),
        }
    }
    let truncated = match truncated.as_deref().map(str::trim) {
        Some("true") => true,
        Some("false") | None => false,
        Some(other) => return Err(format!("ListObjectsV2 gave IsTruncated '{}'", other.escape_debug())),
    };
    if truncated {
        match token.filter(|t| !t.is_empty()) {
            Some(t) => page.next_token = Some(t),
            None => return Err("ListObjectsV2 page is truncated but has no NextContinuationToken".into()),
        }
    }
    Ok(page)
}

/// Handle a closing tag with the element's accumulated text.
fn close(
    stack: &mut Vec<String>,
    value: String,
    pending: &mut Option<Pending>,
    raw: &mut Vec<Pending>,
    truncated: &mut Option<String>,
    token: &mut Option<String>,
    encoding: &mut Option<String>,
) {
    let Some(name) = stack.pop() else { return };
    match (stack.len(), name.as_str()) {
        (1, "IsTruncated") => *truncated = Some(value),
        (1, "NextContinuationToken") => *token = Some(value.trim().to_string()),
        (1, "EncodingType") => *encoding = Some(value),
        (1, "Contents") => {
            if let Some(p) = pending.take() {
                raw.push(p);
            }
        }
        (2, field) if stack.last().is_some_and(|p| p == "Contents") => {
            if let Some(p) = pending.as_mut() {
                match field {
                    // Keys are kept exactly (not trimmed): spaces are legal in keys.
                    "Key" => p.key = Some(value),
                    "Size" => p.size = Some(value.trim().to_string()),
                    "ETag" => p.etag = Some(value.trim().to_string()),
                    _ => {}
                }
            }
        }
        _ => {}
    }
}

/// Decode a `encoding-type=url` value: `%XX` and `+` as a space (AWS and MinIO form-encode).
/// `None` when the bytes are not UTF-8 or a `%` is not followed by two hex digits.
pub fn url_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = |c: u8| (c as char).to_digit(16);
                let (hi, lo) = (b.get(i + 1).and_then(|&c| hex(c))?, b.get(i + 2).and_then(|&c| hex(c))?);
                out.push((hi * 16 + lo) as u8);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// Turn a complete `<Contents>` into an object; `Ok(None)` for a folder placeholder; `Err` names
/// the object (escaped for display) and why it fails alone.
fn finish(p: Pending, url_encoded: bool) -> Result<Option<S3Object>, (String, String)> {
    let Some(raw_key) = p.key else {
        return Err(("<object without a key>".into(), "the listing gave an object without a <Key>".into()));
    };
    let shown = raw_key.escape_debug().to_string();
    let key = if url_encoded {
        url_decode(&raw_key).ok_or_else(|| (shown.clone(), "the listed key does not decode to UTF-8".to_string()))?
    } else {
        raw_key
    };
    let shown = key.escape_debug().to_string();
    if key.is_empty() {
        return Err(("<empty key>".into(), "the listing gave an empty key".into()));
    }
    let size = match p.size.as_deref().map(str::parse::<u64>) {
        Some(Ok(n)) if n <= MAX_OBJECT_SIZE => n,
        Some(Ok(n)) => return Err((shown, format!("the listing claims a size of {n} bytes (over 1 PiB)"))),
        _ => return Err((shown, "no valid <Size> in the listing".into())),
    };
    if size == 0 && key.ends_with('/') {
        return Ok(None);
    }
    let etag = p.etag.map(|e| unquote(&e).to_string()).filter(|e| !e.is_empty());
    Ok(Some(S3Object { key, size, etag }))
}

/// An ETag without its surrounding quotes (and a weak `W/` prefix).
pub fn unquote(etag: &str) -> &str {
    let s = etag.trim();
    let s = s.strip_prefix("W/").unwrap_or(s);
    s.strip_prefix('"').and_then(|t| t.strip_suffix('"')).unwrap_or(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contents(key: &str, size: &str, etag: &str) -> String {
        format!(
            "<Contents><Key>{key}</Key><LastModified>2026-01-15T10:40:00.000Z</LastModified>\
             <ETag>{etag}</ETag><Size>{size}</Size><StorageClass>STANDARD</StorageClass></Contents>"
        )
    }

    fn doc(body: &str, tail: &str) -> String {
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
             <Name>mlpipeline</Name><Prefix>v2/</Prefix>{body}<MaxKeys>1000</MaxKeys>{tail}</ListBucketResult>"
        )
    }

    #[test]
    fn parses_a_truncated_page_with_url_encoded_keys() {
        let body = contents("v2/a/w%20v1.bin", "12583035", "&quot;01dad2f127a6e2408e1f8ea5a3009ff7-3&quot;")
            + &contents("v2/plus+space%2Bplus.txt", "3", "\"0cc175b9c0f1b6a831c399e269772661\"")
            + &contents("v2/caf%C3%A9/%E2%82%AC", "1", "\"x\"");
        let xml = doc(
            &(String::from("<IsTruncated>true</IsTruncated>") + &body),
            "<EncodingType>url</EncodingType><KeyCount>3</KeyCount><NextContinuationToken>1%2Fab+c=</NextContinuationToken>",
        );
        let page = parse_list_page(xml.as_bytes()).unwrap();
        assert!(page.bad.is_empty(), "{:?}", page.bad);
        let keys: Vec<&str> = page.objects.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(keys, ["v2/a/w v1.bin", "v2/plus space+plus.txt", "v2/café/€"]);
        assert_eq!(page.objects[0].size, 12_583_035);
        assert_eq!(page.objects[0].etag.as_deref(), Some("01dad2f127a6e2408e1f8ea5a3009ff7-3"));
        assert_eq!(page.objects[1].etag.as_deref(), Some("0cc175b9c0f1b6a831c399e269772661"));
        // The token is opaque: passed back exactly as given.
        assert_eq!(page.next_token.as_deref(), Some("1%2Fab+c="));
    }

    #[test]
    fn keys_are_not_decoded_without_encoding_type() {
        let xml = doc(&contents("a%20b+c", "1", "\"e\""), "<IsTruncated>false</IsTruncated>");
        let page = parse_list_page(xml.as_bytes()).unwrap();
        assert_eq!(page.objects[0].key, "a%20b+c");
        assert_eq!(page.next_token, None);
    }

    #[test]
    fn hostile_keys_are_kept_verbatim_and_bad_objects_fail_alone() {
        let body = [
            contents("p/a/../b", "1", "\"e\""),
            contents("p//x", "1", "\"e\""),
            contents("p/ctl%01char", "1", "\"e\""),
            contents("p/%2E%2E/x", "1", "\"e\""),
            contents("p/not-utf8-%FF", "1", "\"e\""),
            contents("p/bad-escape-%G1", "1", "\"e\""),
            contents("p/no-size", "", "\"e\""),
            contents("p/huge", "99999999999999999999", "\"e\""),
            contents("p/too-big", "1125899906842625", "\"e\""),
            "<Contents><Size>1</Size></Contents>".into(),
            contents("p/folder/", "0", "\"d41d8cd98f00b204e9800998ecf8427e\""),
            contents("p/empty", "0", "\"d41d8cd98f00b204e9800998ecf8427e\""),
            contents("p/ok", "5", "\"e\""),
        ]
        .concat();
        let xml = doc(&body, "<EncodingType>url</EncodingType><IsTruncated>false</IsTruncated>");
        let page = parse_list_page(xml.as_bytes()).unwrap();
        let keys: Vec<&str> = page.objects.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(keys, ["p/a/../b", "p//x", "p/ctl\u{1}char", "p/../x", "p/empty", "p/ok"]);
        let bad: Vec<&str> = page.bad.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            bad,
            ["p/not-utf8-%FF", "p/bad-escape-%G1", "p/no-size", "p/huge", "p/too-big", "<object without a key>"]
        );
    }

    #[test]
    fn malformed_or_truncated_documents_fail_the_page() {
        for xml in [
            "",
            "garbage",
            "<ListBucketResult><Contents><Key>a</Key>",
            "<ListBucketResult><Contents><Key>a</Size></Contents></ListBucketResult>",
            "<Error><Code>AccessDenied</Code></Error>",
            "<ListBucketResult><Contents><Key>&xxe;</Key><Size>1</Size></Contents></ListBucketResult>",
            "<ListBucketResult><IsTruncated>true</IsTruncated></ListBucketResult>",
            "<ListBucketResult><IsTruncated>true</IsTruncated><NextContinuationToken></NextContinuationToken></ListBucketResult>",
            "<ListBucketResult><IsTruncated>maybe</IsTruncated></ListBucketResult>",
        ] {
            assert!(parse_list_page(xml.as_bytes()).is_err(), "{xml}");
        }
    }

    #[test]
    fn nesting_is_bounded() {
        let nest = |depth: usize| format!("{}{}", "<u>".repeat(depth), "</u>".repeat(depth));
        let ok = doc(&(contents("k", "1", "\"e\"") + &nest(MAX_XML_DEPTH - 1)), "");
        assert_eq!(parse_list_page(ok.as_bytes()).unwrap().objects.len(), 1);
        for xml in [doc(&nest(MAX_XML_DEPTH), ""), doc(&nest(300_000), ""), doc(&"<u>".repeat(300_000), "")] {
            let e = parse_list_page(xml.as_bytes()).unwrap_err();
            assert!(e.contains("nested more than 64 deep"), "{e}");
        }
    }

    #[test]
    fn entities_and_empty_elements() {
        let xml = "<ListBucketResult><Contents><Key>a&amp;b&#x20;c</Key><Size>2</Size><ETag/></Contents>\
                   <IsTruncated>false</IsTruncated><NextContinuationToken/></ListBucketResult>";
        let page = parse_list_page(xml.as_bytes()).unwrap();
        assert_eq!(page.objects, [S3Object { key: "a&b c".into(), size: 2, etag: None }]);
    }

    #[test]
    fn url_decode_rules() {
        assert_eq!(url_decode("a+b%2Bc%2fd").as_deref(), Some("a b+c/d"));
        assert_eq!(url_decode("%"), None);
        assert_eq!(url_decode("%4"), None);
        assert_eq!(url_decode("%C3"), None);
        assert_eq!(url_decode(""), Some(String::new()));
        assert_eq!(unquote("\"abc\""), "abc");
        assert_eq!(unquote("W/\"abc\""), "abc");
        assert_eq!(unquote("abc"), "abc");
    }
}
