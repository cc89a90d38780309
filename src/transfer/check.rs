//! Whole-object checks other than a plain MD5: a multipart ETag (MD5 of the parts' MD5s), and
//! the CRC-32, CRC-32C, CRC-64/NVME and SHA-256 checksums object stores keep. Computed while the
//! bytes land, on the same in-order path as the MD5 (single stream) or prefix cursor (chunks).
use md5::{Digest, Md5};
use sha2::Sha256;

/// What a file's bytes must hash to, besides (or instead of) a plain MD5.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    /// A multipart upload's ETag `<digest>-<parts>`: the MD5 of the concatenated binary MD5s of
    /// `parts` pieces of `part_size` bytes (the last one shorter).
    Md5Multipart {
        /// MD5 of the part MD5s.
        digest: [u8; 16],
        /// Number of parts.
        parts: u32,
        /// Size of every part but the last.
        part_size: u64,
    },
    /// CRC-32 (ISO-HDLC, as zlib), of the whole object.
    Crc32(u32),
    /// CRC-32C (Castagnoli), of the whole object.
    Crc32c(u32),
    /// CRC-64/NVME, of the whole object.
    Crc64Nvme(u64),
    /// SHA-256 of the whole object.
    Sha256([u8; 32]),
}

/// Which check verified a file (the `--json` `verified_by` names, besides `md5` and `none`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckKind {
    /// [`Expected::Md5Multipart`].
    Md5Multipart,
    /// [`Expected::Crc32`].
    Crc32,
    /// [`Expected::Crc32c`].
    Crc32c,
    /// [`Expected::Crc64Nvme`].
    Crc64Nvme,
    /// [`Expected::Sha256`].
    Sha256,
}

impl CheckKind {
    /// The `--json` spelling (`verified_by`).
    pub fn as_str(&self) -> &'static str {
        match self {
            CheckKind::Md5Multipart => "md5-multipart",
            CheckKind::Crc32 => "crc32",
            CheckKind::Crc32c => "crc32c",
            CheckKind::Crc64Nvme => "crc64nvme",
            CheckKind::Sha256 => "sha256",
        }
    }
}

impl Expected {
    /// Which check this is.
    pub fn kind(&self) -> CheckKind {
        match self {
            Expected::Md5Multipart { .. } => CheckKind::Md5Multipart,
            Expected::Crc32(_) => CheckKind::Crc32,
            Expected::Crc32c(_) => CheckKind::Crc32c,
            Expected::Crc64Nvme(_) => CheckKind::Crc64Nvme,
            Expected::Sha256(_) => CheckKind::Sha256,
        }
    }

    /// A user-facing description of a mismatch.
    pub(super) fn mismatch(&self) -> String {
        match self {
            Expected::Md5Multipart { parts, part_size, .. } => format!(
                "md5-multipart mismatch: the bytes do not hash to the object's multipart ETag ({parts} parts of {part_size} bytes)"
            ),
            other => format!("{} mismatch: the bytes do not match the checksum the store keeps", other.kind().as_str()),
        }
    }
}

/// Computes one [`Expected`] value from bytes fed in order.
pub(super) enum CheckHasher {
    Multipart {
        part_size: u64,
        /// Bytes of the current part seen so far.
        in_part: u64,
        part: Md5,
        /// MD5 over the finished parts' binary MD5s.
        outer: Md5,
        parts: u32,
    },
    Crc(CheckKind, crc_fast::Digest),
    Sha256(Sha256),
}

impl CheckHasher {
    /// A hasher for `want`.
    pub fn new(want: &Expected) -> CheckHasher {
        use crc_fast::CrcAlgorithm as A;
        match *want {
            Expected::Md5Multipart { part_size, .. } => CheckHasher::Multipart {
                part_size: part_size.max(1),
                in_part: 0,
                part: Md5::new(),
                outer: Md5::new(),
                parts: 0,
            },
            Expected::Crc32(_) => CheckHasher::Crc(CheckKind::Crc32, crc_fast::Digest::new(A::Crc32IsoHdlc)),
            Expected::Crc32c(_) => CheckHasher::Crc(CheckKind::Crc32c, crc_fast::Digest::new(A::Crc32Iscsi)),
            Expected::Crc64Nvme(_) => CheckHasher::Crc(CheckKind::Crc64Nvme, crc_fast::Digest::new(A::Crc64Nvme)),
            Expected::Sha256(_) => CheckHasher::Sha256(Sha256::new()),
        }
    }

    /// Feed the next bytes.
    pub fn update(&mut self, mut data: &[u8]) {
        match self {
            CheckHasher::Multipart { part_size, in_part, part, outer, parts } => {
                while !data.is_empty() {
                    let room = (*part_size - *in_part).min(data.len() as u64) as usize;
                    let (now, rest) = data.split_at(room);
                    part.update(now);
                    *in_part += room as u64;
                    data = rest;
                    if *in_part == *part_size {
                        outer.update(std::mem::take(part).finalize());
                        *parts += 1;
                        *in_part = 0;
                    }
                }
            }
            CheckHasher::Crc(_, d) => d.update(data),
            CheckHasher::Sha256(h) => h.update(data),
        }
    }

    /// The value of everything fed.
    pub fn finish(self) -> Expected {
        match self {
            CheckHasher::Multipart { part_size, in_part, part, mut outer, mut parts } => {
                if in_part > 0 {
                    outer.update(part.finalize());
                    parts += 1;
                }
                Expected::Md5Multipart { digest: outer.finalize().into(), parts, part_size }
            }
            // Each algorithm's width fits its variant: the casts only drop zero bits.
            CheckHasher::Crc(CheckKind::Crc32, d) => Expected::Crc32(d.finalize() as u32),
            CheckHasher::Crc(CheckKind::Crc32c, d) => Expected::Crc32c(d.finalize() as u32),
            CheckHasher::Crc(_, d) => Expected::Crc64Nvme(d.finalize()),
            CheckHasher::Sha256(h) => Expected::Sha256(h.finalize().into()),
        }
    }
}

/// Feed bytes `from..to` of a file to `md5` and `check` (blocking), read through `buf`.
pub(super) fn feed_from_file(
    file: &std::fs::File,
    from: u64,
    to: u64,
    buf: &mut [u8],
    md5: Option<&mut Md5>,
    check: Option<&mut CheckHasher>,
) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    let (mut md5, mut check) = (md5, check);
    if buf.is_empty() {
        return Err(std::io::Error::other("internal error: empty read buffer"));
    }
    let mut off = from;
    while off < to {
        let want = ((to - off) as usize).min(buf.len());
        let n = file.read_at(&mut buf[..want], off)?;
        if n == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "file shorter than expected"));
        }
        if let Some(h) = md5.as_deref_mut() {
            h.update(&buf[..n]);
        }
        if let Some(c) = check.as_deref_mut() {
            c.update(&buf[..n]);
        }
        off += n as u64;
    }
    Ok(())
}

/// The value of `want`'s check over a whole file (blocking).
pub fn check_of_file(file: &std::fs::File, len: u64, want: &Expected) -> std::io::Result<Expected> {
    let mut h = CheckHasher::new(want);
    feed_from_file(file, 0, len, &mut vec![0u8; 1 << 20], None, Some(&mut h))?;
    Ok(h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(want: Expected, data: &[u8], piece: usize) -> Expected {
        let mut h = CheckHasher::new(&want);
        for p in data.chunks(piece.max(1)) {
            h.update(p);
        }
        h.finish()
    }

    #[test]
    fn crcs_and_sha256_match_published_vectors() {
        // The CRC catalogue's check values over "123456789", and AWS's CRC-32 of "abc" (NSRBwg==).
        let nine = b"123456789";
        assert_eq!(run(Expected::Crc32(0), nine, 4), Expected::Crc32(0xcbf4_3926));
        assert_eq!(run(Expected::Crc32(0), b"abc", 1), Expected::Crc32(0x3524_41c2));
        assert_eq!(run(Expected::Crc32c(0), nine, 2), Expected::Crc32c(0xe306_9283));
        assert_eq!(run(Expected::Crc64Nvme(0), nine, 5), Expected::Crc64Nvme(0xae8b_1486_0a79_9888));
        let Expected::Sha256(d) = run(Expected::Sha256([0; 32]), b"abc", 2) else { panic!() };
        let hex: String = d.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(run(Expected::Crc32(0), b"", 1), Expected::Crc32(0));
    }

    #[test]
    fn multipart_digest_is_the_md5_of_the_part_md5s_whatever_the_pieces() {
        let data: Vec<u8> = (0..10_007u32).map(|i| (i * 31 % 251) as u8).collect();
        let part = 4096u64;
        let mut outer = Md5::new();
        for p in data.chunks(part as usize) {
            outer.update(Md5::digest(p));
        }
        let want = Expected::Md5Multipart { digest: outer.finalize().into(), parts: 3, part_size: part };
        for piece in [1, 100, 4096, 5000, 20_000] {
            assert_eq!(run(want, &data, piece), want, "pieces of {piece}");
        }
        // An exact multiple of the part size has no empty trailing part.
        let whole = &data[..8192];
        let mut outer = Md5::new();
        for p in whole.chunks(part as usize) {
            outer.update(Md5::digest(p));
        }
        let want2 = Expected::Md5Multipart { digest: outer.finalize().into(), parts: 2, part_size: part };
        assert_eq!(run(want2, whole, 777), want2);
        // One flipped byte changes the digest.
        let mut bad = data.clone();
        bad[5000] ^= 1;
        assert_ne!(run(want, &bad, 100), want);
        assert_eq!(want.kind().as_str(), "md5-multipart");
        assert!(want.mismatch().contains("3 parts of 4096 bytes"));
    }

    #[test]
    fn whole_file_check_agrees_with_streaming() {
        let t = tempfile::NamedTempFile::new().unwrap();
        let data: Vec<u8> = (0..3_000_001u32).map(|i| (i * 7 % 253) as u8).collect();
        std::fs::write(t.path(), &data).unwrap();
        let f = std::fs::File::open(t.path()).unwrap();
        for want in [Expected::Crc32c(0), Expected::Md5Multipart { digest: [0; 16], parts: 0, part_size: 1 << 20 }] {
            assert_eq!(check_of_file(&f, data.len() as u64, &want).unwrap(), run(want, &data, 65536));
        }
        assert!(check_of_file(&f, data.len() as u64 + 1, &Expected::Crc32(0)).is_err());
    }
}
