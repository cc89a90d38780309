//! Parsing one List Blobs response page (docs/azure-api.md §4.5) into blob items and the next marker.
//! Pure: bytes in, data out; knows no HTTP, no paths on disk. Treats the XML as hostile: never
//! panics, never expands custom entities, and refuses pages it cannot fully trust.
use crate::http::MAX_XML_DEPTH;
use base64::Engine;
use percent_encoding::percent_decode_str;
use quick_xml::events::{BytesStart, Event};
use quick_xml::reader::Reader;

/// Largest blob size believed (1 PiB); anything larger is a hostile or broken server.
pub const MAX_BLOB_SIZE: u64 = 1 << 50;

/// One listed blob (folder placeholders are never returned). Only what a download uses is kept:
/// a listing may hold a million of these.
#[derive(Debug, Clone, PartialEq)]
pub struct BlobItem {
    /// Full blob name, XML- and (for `Encoded="true"`) percent-decoded.
    pub name: String,
    /// `Content-Length`.
    pub size: u64,
    /// `Etag`, as listed (List Blobs gives it unquoted; Get Blob quotes it: see [`super::same_etag`]).
    pub etag: Option<String>,
    /// `Content-MD5` when it is 16 bytes of valid Base64.
    pub md5: Option<[u8; 16]>,
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq)]
pub struct ListPage {
    /// The blobs of this page, in service order.
    pub blobs: Vec<BlobItem>,
    /// The marker for the next page; `None` when this is the last page.
    pub next_marker: Option<String>,
}

/// Fields collected for the `<Blob>` being read.
#[derive(Default)]
struct Pending {
    name: Option<String>,
    name_encoded: bool,
    size: Option<String>,
    etag: Option<String>,
    md5: Option<String>,
    is_folder: bool,
}

/// Parse one List Blobs page. No namespace is expected; unknown elements and attributes are
/// ignored and element order does not matter. Folder placeholders (metadata `hdi_isfolder=true`,
/// or zero-length names ending in `/`) are skipped. Errors (never panics) on malformed XML, a
/// document that is not `<EnumerationResults>`, a blob without a name or a parseable
/// `Content-Length`, a size above 1 PiB, or elements nested deeper than [`MAX_XML_DEPTH`].
/// Linear in the input: each event costs O(1) (only the top levels of the element stack are
/// ever looked at) and the stack never holds more than [`MAX_XML_DEPTH`] names.
pub fn parse_list_page(xml: &[u8]) -> Result<ListPage, String> {
    let mut reader = Reader::from_reader(xml);
    let cfg = reader.config_mut();
    cfg.check_end_names = true;
    cfg.expand_empty_elements = false;

    let mut stack: Vec<String> = Vec::new();
    let mut text = String::new();
    let mut pending: Option<Pending> = None;
    let mut blobs = Vec::new();
    let mut next_marker: Option<String> = None;
    let mut saw_root = false;

    loop {
        let event = reader.read_event().map_err(|e| format!("malformed List Blobs XML: {e}"))?;
        match event {
            Event::Start(e) => {
                let name = local_name(&e)?;
                too_deep(&stack)?;
                open(&name, &e, &stack, &mut pending, &mut saw_root)?;
                stack.push(name);
                text.clear();
            }
            Event::Empty(e) => {
                let name = local_name(&e)?;
                too_deep(&stack)?;
                open(&name, &e, &stack, &mut pending, &mut saw_root)?;
                stack.push(name);
                text.clear();
                close(&mut stack, "", &mut pending, &mut blobs, &mut next_marker)?;
            }
            Event::End(_) => {
                let value = std::mem::take(&mut text);
                close(&mut stack, &value, &mut pending, &mut blobs, &mut next_marker)?;
            }
            Event::Text(t) => {
                let s = t.xml10_content().map_err(|e| format!("malformed List Blobs XML: {e}"))?;
                text.push_str(&s);
            }
            Event::CData(c) => {
                let s = c.decode().map_err(|e| format!("malformed List Blobs XML: {e}"))?;
                text.push_str(&s);
            }
            Event::GeneralRef(r) => {
                if let Some(ch) = r.resolve_char_ref().map_err(|e| format!("malformed List Blobs XML: {e}"))? {
                    text.push(ch);
                } else {
                    let name = r.decode().map_err(|e| format!("malformed List Blobs XML: {e}"))?;
                    match quick_xml::escape::resolve_predefined_entity(&name) {
                        Some(v) => text.push_str(v),
                        None => {
                            return Err(format!("malformed List Blobs XML: unknown entity '&{name};'"));
                        }
                    }
                }
            }
            Event::Eof => break,
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) | Event::DocType(_) => {}
        }
    }
    if !stack.is_empty() {
        return Err("malformed List Blobs XML: the document is truncated".into());
    }
    if !saw_root {
        return Err("not a List Blobs response (no <EnumerationResults> element)".into());
    }
    Ok(ListPage { blobs, next_marker })
}

/// An error when one more element would nest deeper than [`MAX_XML_DEPTH`].
fn too_deep(stack: &[String]) -> Result<(), String> {
    if stack.len() >= MAX_XML_DEPTH {
        return Err(format!(
            "malformed List Blobs XML: elements nested more than {MAX_XML_DEPTH} deep (a real page nests 5); refusing the page"
        ));
    }
    Ok(())
}

/// The element's local name (any namespace prefix dropped).
fn local_name(e: &BytesStart<'_>) -> Result<String, String> {
    std::str::from_utf8(e.local_name().as_ref())
        .map(str::to_string)
        .map_err(|_| "malformed List Blobs XML: element name is not UTF-8".to_string())
}

/// Handle an opening tag.
fn open(
    name: &str,
    e: &BytesStart<'_>,
    stack: &[String],
    pending: &mut Option<Pending>,
    saw_root: &mut bool,
) -> Result<(), String> {
    if stack.is_empty() {
        if name != "EnumerationResults" {
            return Err(format!("not a List Blobs response (root element <{name}>)"));
        }
        *saw_root = true;
    }
    if in_path(stack, &["EnumerationResults", "Blobs"]) && name == "Blob" {
        *pending = Some(Pending::default());
    }
    if name == "Name" && in_path(stack, &["EnumerationResults", "Blobs", "Blob"]) {
        let encoded = e
            .attributes()
            .with_checks(false)
            .flatten()
            .any(|a| a.key.local_name().as_ref() == b"Encoded" && a.value.as_ref().eq_ignore_ascii_case(b"true"));
        if let Some(p) = pending.as_mut() {
            p.name_encoded = encoded;
        }
    }
    Ok(())
}

/// Handle a closing tag with the element's accumulated text.
fn close(
    stack: &mut Vec<String>,
    value: &str,
    pending: &mut Option<Pending>,
    blobs: &mut Vec<BlobItem>,
    next_marker: &mut Option<String>,
) -> Result<(), String> {
    let Some(name) = stack.pop() else {
        return Err("malformed List Blobs XML: unbalanced end tag".into());
    };
    // Data sits at most four levels below the root: deeper elements are skipped in O(1).
    if stack.len() > 4 {
        return Ok(());
    }
    let parent: Vec<&str> = stack.iter().map(String::as_str).collect();
    let v = value.trim();
    match (parent.as_slice(), name.as_str()) {
        (["EnumerationResults"], "NextMarker") => {
            *next_marker = (!v.is_empty()).then(|| v.to_string());
        }
        (["EnumerationResults", "Blobs", "Blob"], "Name") => {
            if let Some(p) = pending.as_mut() {
                // Names are kept exactly (not trimmed): spaces are legal in blob names.
                p.name = Some(value.to_string());
            }
        }
        (["EnumerationResults", "Blobs", "Blob", "Properties"], field) => {
            if let Some(p) = pending.as_mut() {
                let slot = match field {
                    "Content-Length" => &mut p.size,
                    "Etag" => &mut p.etag,
                    "Content-MD5" => &mut p.md5,
                    _ => return Ok(()),
                };
                *slot = Some(v.to_string());
            }
        }
        (["EnumerationResults", "Blobs", "Blob", "Metadata"], key) => {
            if key.eq_ignore_ascii_case("hdi_isfolder")
                && v.eq_ignore_ascii_case("true")
                && let Some(p) = pending.as_mut()
            {
                p.is_folder = true;
            }
        }
        (["EnumerationResults", "Blobs"], "Blob") => {
            if let Some(p) = pending.take()
                && let Some(item) = finish(p)?
            {
                blobs.push(item);
            }
        }
        _ => {}
    }
    Ok(())
}

/// Turn a complete `<Blob>` into an item, `None` for folder placeholders.
fn finish(p: Pending) -> Result<Option<BlobItem>, String> {
    let Some(raw_name) = p.name else {
        return Err("List Blobs returned a blob without a <Name>".into());
    };
    let name = if p.name_encoded {
        percent_decode_str(&raw_name)
            .decode_utf8()
            .map_err(|_| {
                format!("List Blobs returned an encoded name that is not UTF-8: '{}'", raw_name.escape_debug())
            })?
            .into_owned()
    } else {
        raw_name
    };
    if name.is_empty() {
        return Err("List Blobs returned a blob with an empty name".into());
    }
    let shown = name.escape_debug().to_string();
    let size: u64 = match p.size.as_deref().map(str::parse::<u64>) {
        Some(Ok(n)) => n,
        _ => {
            return Err(format!("blob '{shown}' has no valid Content-Length in the listing"));
        }
    };
    if size > MAX_BLOB_SIZE {
        return Err(format!("blob '{shown}' claims a size of {size} bytes (over 1 PiB); refusing the listing"));
    }
    if p.is_folder || (size == 0 && name.ends_with('/')) {
        return Ok(None);
    }
    let md5 = p.md5.as_deref().and_then(decode_md5);
    Ok(Some(BlobItem { name, size, etag: p.etag.filter(|s| !s.is_empty()), md5 }))
}

/// 16 bytes of standard Base64, or `None`.
pub(crate) fn decode_md5(b64: &str) -> Option<[u8; 16]> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(b64.trim()).ok()?;
    bytes.try_into().ok()
}

/// Whether `stack` is exactly `path`.
fn in_path(stack: &[String], path: &[&str]) -> bool {
    stack.len() == path.len() && stack.iter().zip(path).all(|(a, b)| a == b)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<EnumerationResults ServiceEndpoint="https://wsstore01.blob.core.windows.net/" ContainerName="azureml">
  <Prefix>ExperimentRun/dcid.job-123/</Prefix>
  <Marker/>
  <MaxResults>5000</MaxResults>
  <Blobs>
    <Blob>
      <Name>ExperimentRun/dcid.job-123/user_logs/std_log.txt</Name>
      <Properties>
        <Creation-Time>Thu, 15 Jan 2026 10:00:00 GMT</Creation-Time>
        <Last-Modified>Thu, 15 Jan 2026 10:05:00 GMT</Last-Modified>
        <Etag>0x8DE1234567890AB</Etag>
        <Content-Length>1234</Content-Length>
        <Content-Type>text/plain</Content-Type>
        <Content-MD5>sQqNsWTgdUEFt6mb5y4/5Q==</Content-MD5>
        <BlobType>BlockBlob</BlobType>
        <AccessTier>Hot</AccessTier>
      </Properties>
      <Metadata/>
    </Blob>
    <Blob>
      <Name>ExperimentRun/dcid.job-123/outputs</Name>
      <Properties><Content-Length>0</Content-Length><BlobType>BlockBlob</BlobType></Properties>
      <Metadata><hdi_isfolder>true</hdi_isfolder></Metadata>
    </Blob>
  </Blobs>
  <NextMarker>2!96!MDAwMDQ…</NextMarker>
</EnumerationResults>"#;

    fn page(blobs: &str, tail: &str) -> String {
        format!("<?xml version=\"1.0\"?><EnumerationResults><Blobs>{blobs}</Blobs>{tail}</EnumerationResults>")
    }

    fn blob(name: &str, size: &str) -> String {
        format!("<Blob><Name>{name}</Name><Properties><Content-Length>{size}</Content-Length></Properties></Blob>")
    }

    #[test]
    fn sample_page() {
        let p = parse_list_page(SAMPLE.as_bytes()).unwrap();
        assert_eq!(p.next_marker.as_deref(), Some("2!96!MDAwMDQ…"));
        assert_eq!(p.blobs.len(), 1, "the hdi_isfolder placeholder is skipped");
        let b = &p.blobs[0];
        assert_eq!(b.name, "ExperimentRun/dcid.job-123/user_logs/std_log.txt");
        assert_eq!(b.size, 1234);
        assert_eq!(b.etag.as_deref(), Some("0x8DE1234567890AB"));
        let md5 = b.md5.unwrap();
        assert_eq!(md5[0], 0xb1);
        assert_eq!(md5[15], 0xe5);
    }

    #[test]
    fn encoded_names_and_entities() {
        let xml = page(
            &format!(
                "{}{}{}{}",
                r#"<Blob><Name Encoded="true">dir/a%0Bb%20c%25.txt</Name><Properties><Content-Length>5</Content-Length></Properties></Blob>"#,
                blob("R&amp;D/&lt;x&gt; &quot;q&quot; &apos;s&apos; &#233;&#x41;.txt", "7"),
                r#"<Blob><Name Encoded="false">100%25.txt</Name><Properties><Content-Length>1</Content-Length></Properties></Blob>"#,
                blob("<![CDATA[cdata & name]]>", "2"),
            ),
            "<NextMarker></NextMarker>",
        );
        let p = parse_list_page(xml.as_bytes()).unwrap();
        let names: Vec<&str> = p.blobs.iter().map(|b| b.name.as_str()).collect();
        assert_eq!(names, ["dir/a\u{b}b c%.txt", "R&D/<x> \"q\" 's' éA.txt", "100%25.txt", "cdata & name"]);
        assert_eq!(p.next_marker, None);
    }

    #[test]
    fn names_keep_spaces_and_order_does_not_matter() {
        let xml = page(
            "<Blob><Properties><Content-MD5>nope</Content-MD5><Content-Length> 9 </Content-Length><Etag>\"0x1\"</Etag></Properties><Name> spaced </Name><Unknown a=\"b\"><x/></Unknown></Blob>",
            "<Extra>1</Extra>",
        );
        let p = parse_list_page(xml.as_bytes()).unwrap();
        assert_eq!(p.blobs[0].name, " spaced ");
        assert_eq!(p.blobs[0].size, 9);
        assert_eq!(p.blobs[0].md5, None, "invalid base64 is ignored");
        assert_eq!(p.blobs[0].etag.as_deref(), Some("\"0x1\""));
        assert_eq!(p.next_marker, None, "absent NextMarker");
        // A 15-byte MD5 is not an MD5.
        let short = page(
            "<Blob><Name>a</Name><Properties><Content-Length>1</Content-Length><Content-MD5>AAAAAAAAAAAAAAAAAAAA</Content-MD5></Properties></Blob>",
            "",
        );
        assert_eq!(parse_list_page(short.as_bytes()).unwrap().blobs[0].md5, None);
    }

    #[test]
    fn folder_placeholders_are_skipped() {
        let xml = page(
            &format!(
                "{}{}{}{}",
                blob("dir/", "0"),
                blob("dir2/", "5"),
                "<Blob><Name>d</Name><Properties><Content-Length>0</Content-Length></Properties><Metadata><HDI_ISFOLDER>TRUE</HDI_ISFOLDER></Metadata></Blob>",
                "<Blob><Name>f</Name><Properties><Content-Length>0</Content-Length></Properties><Metadata><hdi_isfolder>false</hdi_isfolder></Metadata></Blob>",
            ),
            "",
        );
        let p = parse_list_page(xml.as_bytes()).unwrap();
        let names: Vec<&str> = p.blobs.iter().map(|b| b.name.as_str()).collect();
        // A non-empty blob whose name ends in '/' is data; safepath rejects it later with a clear error.
        assert_eq!(names, ["dir2/", "f"]);
    }

    #[test]
    fn hostile_pages_are_errors() {
        let huge = (MAX_BLOB_SIZE + 1).to_string();
        let cases = [
            String::new(),
            "not xml at all".to_string(),
            "<html><body>proxy error</body></html>".to_string(),
            "<EnumerationResults><Blobs><Blob><Name>a</Name>".to_string(),
            "<EnumerationResults><Blobs></Blob></EnumerationResults>".to_string(),
            page(&blob("a", "-1"), ""),
            page(&blob("a", "12abc"), ""),
            page(&blob("a", ""), ""),
            page("<Blob><Name>a</Name></Blob>", ""),
            page(&blob("big", &huge), ""),
            page(&blob("", "1"), ""),
            page("<Blob><Properties><Content-Length>1</Content-Length></Properties></Blob>", ""),
            page(&blob("&bogus;", "1"), ""),
            page(
                r#"<Blob><Name Encoded="true">%FF</Name><Properties><Content-Length>1</Content-Length></Properties></Blob>"#,
                "",
            ),
            "<!DOCTYPE x [<!ENTITY e \"boom\">]><EnumerationResults><Blobs>".to_string()
                + &blob("&e;", "1")
                + "</Blobs></EnumerationResults>",
        ];
        for xml in &cases {
            assert!(parse_list_page(xml.as_bytes()).is_err(), "accepted: {xml}");
        }
        let e = parse_list_page(page(&blob("big", &huge), "").as_bytes()).unwrap_err();
        assert!(e.contains("'big'") && e.contains("1 PiB"), "{e}");
        // Exactly 1 PiB is still believed.
        assert_eq!(
            parse_list_page(page(&blob("ok", &MAX_BLOB_SIZE.to_string()), "").as_bytes()).unwrap().blobs[0].size,
            MAX_BLOB_SIZE
        );
    }

    #[test]
    fn empty_pages_and_blob_prefixes() {
        let p = parse_list_page(b"<EnumerationResults><Blobs/><NextMarker/></EnumerationResults>").unwrap();
        assert_eq!(p, ListPage { blobs: vec![], next_marker: None });
        let p = parse_list_page(
            b"<EnumerationResults><Blobs><BlobPrefix><Name>dir/</Name></BlobPrefix></Blobs><NextMarker> m2 </NextMarker></EnumerationResults>",
        )
        .unwrap();
        assert!(p.blobs.is_empty());
        assert_eq!(p.next_marker.as_deref(), Some("m2"));
    }

    #[test]
    fn nesting_is_bounded_and_linear() {
        let nested = |depth: usize, closed: bool| {
            let mut inner = "<u>".repeat(depth);
            if closed {
                inner.push_str(&"</u>".repeat(depth));
            }
            let blob =
                format!("<Blob><Name>a</Name><Properties><Content-Length>1</Content-Length></Properties>{inner}");
            if closed { page(&format!("{blob}</Blob>"), "") } else { format!("<EnumerationResults><Blobs>{blob}") }
        };
        // 4 levels down to <Blob>, one more for the nest: 59 levels of unknown elements fit.
        let ok = parse_list_page(nested(MAX_XML_DEPTH - 5, true).as_bytes()).unwrap();
        assert_eq!(ok.blobs.len(), 1);
        for xml in [nested(MAX_XML_DEPTH - 2, true), nested(300_000, true), nested(300_000, false)] {
            let e = parse_list_page(xml.as_bytes()).unwrap_err();
            assert!(e.contains("nested more than 64 deep"), "{e}");
        }
        // Many sibling nests just inside the limit: about 2 MB, each event O(1).
        let one = format!("{}{}", "<u>".repeat(MAX_XML_DEPTH - 6), "</u>".repeat(MAX_XML_DEPTH - 6));
        let wide = page(
            &format!(
                "<Blob><Name>a</Name><Properties><Content-Length>1</Content-Length></Properties>{}</Blob>",
                one.repeat(5_000)
            ),
            "",
        );
        assert_eq!(parse_list_page(wide.as_bytes()).unwrap().blobs.len(), 1);
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut seed = 0x1234_5678_u64;
        let base = SAMPLE.as_bytes();
        for _ in 0..2000 {
            let mut v = base.to_vec();
            for _ in 0..4 {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let i = (seed >> 33) as usize % v.len();
                v[i] = (seed >> 13) as u8;
            }
            let cut = (seed >> 40) as usize % (v.len() + 1);
            let _ = parse_list_page(&v[..cut]);
            let _ = parse_list_page(&v);
        }
    }
}
