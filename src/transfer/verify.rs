//! Verification verdicts and whole-file MD5 (re-reading a finished part file off the async workers).
use md5::{Digest, Md5};
use std::fs::File;

/// The MD5 verdict of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Md5Status {
    /// Matched the service's MD5.
    Verified,
    /// The service stores none (or the file failed before it could be checked).
    Absent,
    /// Did not match.
    Mismatch,
}

impl Md5Status {
    /// The `--json` spelling.
    pub fn as_str(&self) -> &'static str {
        match self {
            Md5Status::Verified => "verified",
            Md5Status::Absent => "absent",
            Md5Status::Mismatch => "mismatch",
        }
    }
}

/// MD5 of the first `len` bytes of a file (blocking).
pub fn md5_of_file(file: &File, len: u64) -> std::io::Result<[u8; 16]> {
    use std::os::unix::fs::FileExt;
    let mut hasher = Md5::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut off = 0u64;
    while off < len {
        let want = ((len - off) as usize).min(buf.len());
        let n = file.read_at(&mut buf[..want], off)?;
        if n == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "file shorter than expected"));
        }
        hasher.update(&buf[..n]);
        off += n as u64;
    }
    Ok(hasher.finalize().into())
}

/// Decode a base64 MD5 header value.
pub fn decode_md5(v: &str) -> Option<[u8; 16]> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD.decode(v.trim()).ok()?;
    bytes.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_helpers_agree() {
        let t = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(t.path(), b"hello world").unwrap();
        let f = File::open(t.path()).unwrap();
        let a = md5_of_file(&f, 11).unwrap();
        assert_eq!(a, <[u8; 16]>::from(Md5::digest(b"hello world")));
        assert_eq!(decode_md5("XrY7u+Ae7tCTyyK7j1rNww=="), Some(a));
        assert_eq!(decode_md5("bad"), None);
        assert!(md5_of_file(&f, 12).is_err());
    }
}
