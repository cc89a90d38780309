//! KFP v1 (Argo) `:read` bodies (docs/kfp-s3-api.md §4): the API streams
//! `{"data":"<padded standard base64 of a .tgz>"}` with no length, range or ETag, and an error after
//! the `200` just cuts the body short. [`Envelope`] turns such a body into the `.tgz` bytes as a
//! stream (the JSON envelope and base64 are parsed as they arrive, so memory stays bounded); the
//! engine unpacks them (`transfer::unpack`). [`ReadBody`] hands both that decoder and the parsing
//! of KFP error bodies to the engine, which knows nothing about KFP.
use crate::safepath::printable;
use crate::transfer::BodyDecoder;
use base64::Engine;
use std::io::{self, Read};

/// Bytes of the body read by the envelope parser at once.
const IN_BUF: usize = 64 << 10;

/// The decoder of `:read` bodies, handed to the engine with each archive.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReadBody;

impl BodyDecoder for ReadBody {
    fn decode<'a>(&self, body: Box<dyn Read + 'a>) -> Box<dyn Read + 'a> {
        Box::new(Envelope::new(body))
    }

    fn error_message(&self, body: &[u8]) -> Option<String> {
        error_message(body)
    }
}

/// Where the envelope parser is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Expecting prefix token `n` (`{`, `"data"`, `:`, `"`), whitespace allowed before it; the
    /// second field is how many bytes of the token matched.
    Prefix(usize, usize),
    /// Inside the string: base64 characters.
    Body,
    /// After a `\` inside the string (only `\/` is accepted).
    Escape,
    /// After the closing `"`: expecting `}`.
    Close,
    /// After the `}`: only whitespace until the end.
    Tail,
}

const PREFIX: [&[u8]; 4] = [b"{", b"\"data\"", b":", b"\""];

fn is_json_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

fn is_b64(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=')
}

/// Reads `{"data":"<padded standard base64>"}` from `src` and yields the decoded bytes. The end
/// of the decoded stream is only reported once the closing `"}` arrived and the body ended;
/// anything else (an early end, a bad character, trailing data) is an error.
pub struct Envelope<R> {
    src: R,
    stage: Stage,
    inbuf: Vec<u8>,
    /// Base64 text not decoded yet (fewer than 4 characters between reads).
    b64: Vec<u8>,
    /// Decoded bytes not handed out yet, from `pos`.
    out: Vec<u8>,
    pos: usize,
    /// A padded quad was decoded: nothing may follow.
    padded: bool,
    /// Body bytes consumed so far (for messages).
    offset: u64,
    finished: bool,
}

impl<R: Read> Envelope<R> {
    /// The decoder of the body `src`.
    pub fn new(src: R) -> Self {
        Envelope {
            src,
            stage: Stage::Prefix(0, 0),
            inbuf: vec![0; IN_BUF],
            b64: Vec::with_capacity(IN_BUF + 4),
            out: Vec::with_capacity(IN_BUF),
            pos: 0,
            padded: false,
            offset: 0,
            finished: false,
        }
    }

    fn fail(&self, msg: String) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, msg)
    }

    /// Read one piece of the body and parse it.
    fn fill(&mut self) -> io::Result<()> {
        let n = match self.src.read(&mut self.inbuf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(()),
            Err(e) => return Err(e),
        };
        if n == 0 {
            return match self.stage {
                Stage::Tail => {
                    self.finished = true;
                    Ok(())
                }
                Stage::Close => Err(self.fail("the body ended without its closing '}' (cut short)".into())),
                _ => Err(self.fail(format!("the body ended early, after {} bytes (no closing '\"}}')", self.offset))),
            };
        }
        let data = std::mem::take(&mut self.inbuf);
        let r = self.parse(&data[..n]);
        self.inbuf = data;
        r
    }

    fn parse(&mut self, data: &[u8]) -> io::Result<()> {
        let mut i = 0;
        while i < data.len() {
            let at = self.offset + i as u64;
            match self.stage {
                Stage::Body => {
                    let start = i;
                    while i < data.len() && is_b64(data[i]) {
                        i += 1;
                    }
                    self.push_b64(start, &data[start..i])?;
                    if i == data.len() {
                        break;
                    }
                    match data[i] {
                        b'"' => {
                            self.end_of_text()?;
                            self.stage = Stage::Close;
                        }
                        b'\\' => self.stage = Stage::Escape,
                        b => {
                            return Err(self.fail(format!(
                                "invalid base64: unexpected byte 0x{b:02x} at byte {} of the body",
                                self.offset + i as u64
                            )));
                        }
                    }
                    i += 1;
                    continue;
                }
                Stage::Escape => {
                    if data[i] != b'/' {
                        return Err(self.fail(format!("unexpected JSON escape at byte {at} of the body")));
                    }
                    self.push_b64(i, b"/")?;
                    self.stage = Stage::Body;
                }
                Stage::Prefix(token, matched) => {
                    let b = data[i];
                    if matched == 0 && is_json_ws(b) {
                        i += 1;
                        continue;
                    }
                    let want = PREFIX[token];
                    if b != want[matched] {
                        return Err(self.fail(format!(
                            "not a KFP artifact body (expected {{\"data\":\"…\"}}; unexpected byte 0x{b:02x} at byte {at})"
                        )));
                    }
                    self.stage = match (matched + 1 == want.len(), token + 1 == PREFIX.len()) {
                        (false, _) => Stage::Prefix(token, matched + 1),
                        (true, false) => Stage::Prefix(token + 1, 0),
                        (true, true) => Stage::Body,
                    };
                }
                Stage::Close | Stage::Tail => {
                    let b = data[i];
                    if !is_json_ws(b) {
                        if self.stage == Stage::Close && b == b'}' {
                            self.stage = Stage::Tail;
                        } else {
                            return Err(
                                self.fail(format!("unexpected data after the archive at byte {at} of the body"))
                            );
                        }
                    }
                }
            }
            i += 1;
        }
        self.offset += data.len() as u64;
        self.decode_ready()
    }

    fn push_b64(&mut self, at: usize, s: &[u8]) -> io::Result<()> {
        if s.is_empty() {
            return Ok(());
        }
        if self.padded {
            return Err(
                self.fail(format!("invalid base64: data after the padding at byte {}", self.offset + at as u64))
            );
        }
        self.b64.extend_from_slice(s);
        if self.b64.len() >= IN_BUF { self.decode_ready() } else { Ok(()) }
    }

    /// Decode every complete quad gathered so far.
    fn decode_ready(&mut self) -> io::Result<()> {
        let n = self.b64.len() / 4 * 4;
        if n == 0 {
            return Ok(());
        }
        if self.pos == self.out.len() {
            self.out.clear();
            self.pos = 0;
        }
        let r = base64::engine::general_purpose::STANDARD.decode_vec(&self.b64[..n], &mut self.out);
        if let Err(e) = r {
            return Err(self.fail(format!("invalid base64 ({e})")));
        }
        self.padded = self.b64[n - 1] == b'=';
        self.b64.drain(..n);
        if self.padded && !self.b64.is_empty() {
            return Err(self.fail("invalid base64: data after the padding".into()));
        }
        Ok(())
    }

    /// The closing quote: what is left must be whole quads.
    fn end_of_text(&mut self) -> io::Result<()> {
        self.decode_ready()?;
        if !self.b64.is_empty() {
            return Err(self.fail("invalid base64: the text length is not a multiple of 4".into()));
        }
        Ok(())
    }
}

impl<R: Read> Read for Envelope<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.pos < self.out.len() {
                let n = buf.len().min(self.out.len() - self.pos);
                buf[..n].copy_from_slice(&self.out[self.pos..self.pos + n]);
                self.pos += n;
                return Ok(n);
            }
            if self.finished || buf.is_empty() {
                return Ok(0);
            }
            self.fill()?;
        }
    }
}

/// The message of a KFP error body (`{"error_message": …}`, or gRPC-gateway's `message`),
/// redacted, escaped and cut to 300 characters.
fn error_message(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let m = ["error_message", "message", "error"].iter().find_map(|k| v.get(*k).and_then(|m| m.as_str()))?;
    let m: String = printable(m.trim()).chars().take(300).collect();
    (!m.is_empty()).then(|| crate::redact::redact(&m))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transfer::unpack::tests::{Reset, split};
    use base64::engine::general_purpose::STANDARD;

    fn envelope(bytes: &[u8]) -> Vec<u8> {
        format!("{{\"data\":\"{}\"}}", STANDARD.encode(bytes)).into_bytes()
    }

    fn decoded(body: impl Read) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        ReadBody.decode(Box::new(body)).read_to_end(&mut out)?;
        Ok(out)
    }

    /// Bytes whose base64 holds every character class, long enough to span several pieces.
    fn sample() -> Vec<u8> {
        (0..3000u32).map(|i| (i * 7 % 256) as u8).collect()
    }

    #[test]
    fn envelope_decodes_across_every_chunk_boundary() {
        let data = sample();
        let body = envelope(&data);
        for cut in 0..=body.len() {
            assert_eq!(decoded(split(&body, &[cut])).unwrap(), data, "cut at {cut}");
        }
        for (a, b) in [(1, 2), (3, 9), (9, 10), (10, 14), (body.len() - 3, body.len() - 1)] {
            assert_eq!(decoded(split(&body, &[a, b])).unwrap(), data, "cuts at {a}, {b}");
        }
        let bytewise: Vec<usize> = (1..body.len()).collect();
        assert_eq!(decoded(split(&body, &bytewise)).unwrap(), data);
    }

    #[test]
    fn envelope_tolerates_whitespace_and_escaped_slashes() {
        let data: Vec<u8> = (0..=255u8).collect(); // its base64 holds '/' and '+'
        let b64 = STANDARD.encode(&data);
        assert!(b64.contains('/'));
        let body = format!(" \r\n{{ \"data\" :\t\"{}\" }}\n", b64.replace('/', "\\/"));
        assert_eq!(decoded(split(body.as_bytes(), &[])).unwrap(), data);
        assert_eq!(decoded(split(b"{\"data\":\"\"}", &[])).unwrap(), b"");
    }

    #[test]
    fn envelope_refuses_anything_else() {
        let ok = STANDARD.encode(b"hello world");
        let cases = [
            format!("{{\"dat\":\"{ok}\"}}"),
            format!("{{\"data\" : \"{ok}\", \"x\":1}}"),
            format!("{{\"data\":\"{ok}\"}}x"),
            format!("{{\"data\":\"{ok}\"}}}}"),
            format!("{{\"data\":\"{ok}\\n\"}}"),
            format!("[\"{ok}\"]"),
            format!("{{\"data\":\"{}\"}}", &ok[..ok.len() - 1]),
            "{\"data\":\"QQ==QUJD\"}".to_string(),
            "{\"data\":\"QR==\"}".to_string(),
            "{\"data\":\"Q===\"}".to_string(),
            "{\"data\":\"QUJD!UJD\"}".to_string(),
            "{\"data\":\"QUJD\u{e9}\"}".to_string(),
            "<html>bad gateway</html>".to_string(),
            String::new(),
        ];
        for c in cases {
            let e = decoded(split(c.as_bytes(), &[])).unwrap_err();
            assert!(matches!(e.kind(), io::ErrorKind::InvalidData), "{c:?}: {e}");
        }
    }

    #[test]
    fn a_body_cut_short_or_with_bad_base64_says_so() {
        let body = envelope(&sample());
        for keep in [0, 5, 9, 20, body.len() / 2, body.len() - 3, body.len() - 2, body.len() - 1] {
            let e = decoded(split(&body[..keep], &[])).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{keep}: {e}");
        }
        let e = decoded(split(&body[..body.len() - 2], &[])).unwrap_err();
        assert!(e.to_string().contains("ended early"), "{e}");
        let e = decoded(split(&body[..body.len() - 1], &[])).unwrap_err();
        assert!(e.to_string().contains("closing '}'"), "{e}");
        let mut bad = body.clone();
        let at = bad.len() / 2;
        bad[at] = b'*';
        let e = decoded(split(&bad, &[])).unwrap_err();
        assert!(e.to_string().contains("invalid base64"), "{e}");
    }

    #[test]
    fn a_transport_error_passes_through() {
        let body = envelope(&sample());
        let e = decoded(Reset(split(&body[..body.len() / 2], &[]))).unwrap_err();
        assert_eq!(e.to_string(), "connection reset by peer");
    }

    #[test]
    fn error_bodies_give_their_message() {
        assert_eq!(
            error_message(br#"{"error_message":"artifact not found?sig=abc","error_details":"x"}"#).as_deref(),
            Some("artifact not found?sig=REDACTED")
        );
        assert_eq!(error_message(br#"{"code":5,"message":"no run"}"#).as_deref(), Some("no run"));
        assert_eq!(error_message(b"<html>"), None);
    }
}
