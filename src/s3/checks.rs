//! How a listed object's bytes can be verified (docs/kfp-s3-api.md §6.3, §6.4): a single-part ETag
//! is the MD5; a multipart ETag `<hex>-N` is the MD5 of the parts' MD5s once the part size is
//! known; else the checksum the store keeps (`x-amz-checksum-mode: ENABLED` on a HEAD).
use crate::transfer::Expected;
use base64::Engine;
use reqwest::header::HeaderMap;

/// What an ETag alone says about verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EtagCheck {
    /// A single-part ETag: the object's MD5.
    Md5([u8; 16]),
    /// A multipart ETag whose part layout is known without a request (one part).
    Known(Expected),
    /// A multipart ETag of `parts` ≥ 2 parts: the part size must be asked for
    /// (`HEAD ?partNumber=1`); several part sizes give the same part count, so it is never guessed.
    NeedsPartSize {
        /// MD5 of the part MD5s.
        digest: [u8; 16],
        /// Number of parts.
        parts: u32,
    },
    /// Opaque (or encrypted with SSE-KMS / SSE-C): only a stored checksum can verify it.
    Opaque,
}

/// Classify an object from its listed size and ETag. `encrypted`: SSE-KMS or SSE-C, where no
/// ETag is an MD5.
pub fn etag_check(size: u64, etag: Option<&str>, encrypted: bool) -> EtagCheck {
    let Some(etag) = etag.map(super::list::unquote) else { return EtagCheck::Opaque };
    if encrypted {
        return EtagCheck::Opaque;
    }
    if let super::EtagKind::Md5(m) = super::classify_etag(etag) {
        return EtagCheck::Md5(m);
    }
    let Some((digest, parts)) = multipart_etag(etag) else { return EtagCheck::Opaque };
    match parts {
        // One part is the whole object: any part size of at least `size` gives this layout.
        1 if size > 0 => EtagCheck::Known(Expected::Md5Multipart { digest, parts, part_size: size }),
        1 => EtagCheck::Opaque,
        _ => EtagCheck::NeedsPartSize { digest, parts },
    }
}

/// `<32 hex>-N` → (binary digest, N).
pub fn multipart_etag(etag: &str) -> Option<([u8; 16], u32)> {
    let super::EtagKind::Multipart(n) = super::classify_etag(etag) else { return None };
    let hex = super::list::unquote(etag).split_once('-')?.0;
    let mut out = [0u8; 16];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some((out, n))
}

/// The multipart check when part 1 is `part_size` bytes and that layout gives `parts` parts of
/// an object of `size` bytes (every part but the last of one size, as S3 clients upload).
pub fn multipart_with(size: u64, digest: [u8; 16], parts: u32, part_size: u64) -> Option<Expected> {
    (part_size > 0 && size.div_ceil(part_size) == u64::from(parts)).then_some(Expected::Md5Multipart {
        digest,
        parts,
        part_size,
    })
}

/// The whole-object checksum in a HEAD response sent with `x-amz-checksum-mode: ENABLED`: the
/// first of CRC-64/NVME, CRC-32C, CRC-32, SHA-256 present with the length its algorithm has. A
/// `COMPOSITE` checksum (of the parts' checksums; its value ends in `-N`) is skipped.
pub fn stored_checksum(h: &HeaderMap) -> Option<Expected> {
    let header = |n: &str| h.get(n).and_then(|v| v.to_str().ok()).map(str::trim);
    if header("x-amz-checksum-type").is_some_and(|t| !t.eq_ignore_ascii_case("FULL_OBJECT")) {
        return None;
    }
    let bytes = |n: &str| -> Option<Vec<u8>> {
        let v = header(n)?;
        base64::engine::general_purpose::STANDARD.decode(v).ok()
    };
    if let Some(b) = bytes("x-amz-checksum-crc64nvme").and_then(|b| <[u8; 8]>::try_from(b).ok()) {
        return Some(Expected::Crc64Nvme(u64::from_be_bytes(b)));
    }
    if let Some(b) = bytes("x-amz-checksum-crc32c").and_then(|b| <[u8; 4]>::try_from(b).ok()) {
        return Some(Expected::Crc32c(u32::from_be_bytes(b)));
    }
    if let Some(b) = bytes("x-amz-checksum-crc32").and_then(|b| <[u8; 4]>::try_from(b).ok()) {
        return Some(Expected::Crc32(u32::from_be_bytes(b)));
    }
    if let Some(b) = bytes("x-amz-checksum-sha256").and_then(|b| <[u8; 32]>::try_from(b).ok()) {
        return Some(Expected::Sha256(b));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderName, HeaderValue};

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    const DIGEST: [u8; 16] =
        [0x01, 0xda, 0xd2, 0xf1, 0x27, 0xa6, 0xe2, 0x40, 0x8e, 0x1f, 0x8e, 0xa5, 0xa3, 0x00, 0x9f, 0xf7];

    #[test]
    fn etags_choose_the_check() {
        let mib = 1u64 << 20;
        let single = "\"0cc175b9c0f1b6a831c399e269772661\"";
        assert!(matches!(etag_check(1, Some(single), false), EtagCheck::Md5(_)));
        assert_eq!(etag_check(1, Some(single), true), EtagCheck::Opaque, "SSE-KMS: not the MD5");
        let multi = "01dad2f127a6e2408e1f8ea5a3009ff7-3";
        assert_eq!(multipart_etag(multi), Some((DIGEST, 3)));
        assert_eq!(
            etag_check(12 * mib + 123, Some(multi), false),
            EtagCheck::NeedsPartSize { digest: DIGEST, parts: 3 }
        );
        assert_eq!(etag_check(12 * mib, Some(multi), true), EtagCheck::Opaque);
        let one = "01dad2f127a6e2408e1f8ea5a3009ff7-1";
        assert_eq!(
            etag_check(7, Some(one), false),
            EtagCheck::Known(Expected::Md5Multipart { digest: DIGEST, parts: 1, part_size: 7 })
        );
        assert_eq!(etag_check(0, Some(one), false), EtagCheck::Opaque);
        for opaque in [None, Some("abc"), Some("01dad2f127a6e2408e1f8ea5a3009ff7-"), Some("W/\"x\"")] {
            assert_eq!(etag_check(10, opaque, false), EtagCheck::Opaque, "{opaque:?}");
        }
    }

    #[test]
    fn part_sizes_must_give_the_part_count() {
        let mib = 1u64 << 20;
        // moto: 12 MiB + 123 B in 5 MiB parts → 3 parts (§6.3).
        let e = multipart_with(12 * mib + 123, DIGEST, 3, 5 * mib);
        assert_eq!(e, Some(Expected::Md5Multipart { digest: DIGEST, parts: 3, part_size: 5 * mib }));
        assert_eq!(multipart_with(12 * mib + 123, DIGEST, 3, 8 * mib), None, "8 MiB parts give 2");
        assert!(multipart_with(16 * mib, DIGEST, 2, 8 * mib).is_some());
        assert_eq!(multipart_with(16 * mib, DIGEST, 2, 0), None);
        // A server ignoring partNumber answers the whole length: one part, not N.
        assert_eq!(multipart_with(16 * mib, DIGEST, 2, 16 * mib), None);
    }

    #[test]
    fn stored_checksums_are_decoded_big_endian_and_composites_skipped() {
        // AWS: CRC-32 of "abc" is NSRBwg==.
        assert_eq!(
            stored_checksum(&headers(&[("x-amz-checksum-crc32", "NSRBwg==")])),
            Some(Expected::Crc32(0x3524_41c2))
        );
        let h = headers(&[
            ("x-amz-checksum-crc32", "NSRBwg=="),
            ("x-amz-checksum-crc32c", "4waSgw=="),
            ("x-amz-checksum-type", "FULL_OBJECT"),
        ]);
        assert_eq!(stored_checksum(&h), Some(Expected::Crc32c(0xe306_9283)), "CRC-32C is preferred");
        let h = headers(&[("x-amz-checksum-crc64nvme", "rosUhgp5mIg="), ("x-amz-checksum-crc32", "NSRBwg==")]);
        assert_eq!(stored_checksum(&h), Some(Expected::Crc64Nvme(0xae8b_1486_0a79_9888)));
        let sha = "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=";
        let Some(Expected::Sha256(d)) = stored_checksum(&headers(&[("x-amz-checksum-sha256", sha)])) else { panic!() };
        assert_eq!(d[..4], [0xba, 0x78, 0x16, 0xbf]);
        // Composite (of parts), malformed, wrong length, absent: no check.
        for h in [
            headers(&[("x-amz-checksum-crc32", "NSRBwg=="), ("x-amz-checksum-type", "COMPOSITE")]),
            headers(&[("x-amz-checksum-crc32", "NSRBwg==-3")]),
            headers(&[("x-amz-checksum-crc32", "NSRBwgAA")]),
            headers(&[("x-amz-checksum-crc32c", "not base64!")]),
            headers(&[("x-amz-checksum-sha1", "qZk+NkcGgWq6PiVxeFDCbJzQ2J0=")]),
            headers(&[]),
        ] {
            assert_eq!(stored_checksum(&h), None, "{h:?}");
        }
    }
}
