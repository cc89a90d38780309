//! Scripted faults: the rules a test adds (`FaultRule`, `Fault`) and the replies and body
//! streams that play them (status errors, cut, huge, trickled and stalled bodies).

use super::*;

/// A scripted misbehaviour for the next `times` matching requests.
#[derive(Clone, Debug)]
pub struct FaultRule {
    /// `None` matches any method; compared case-insensitively.
    pub method: Option<String>,
    /// Matched against the raw (percent-encoded) path.
    pub path_contains: String,
    /// How many matching requests get the fault; then it is spent.
    pub times: u32,
    pub fault: Fault,
    /// `None` matches any query; else the raw query must contain this.
    pub query_contains: Option<String>,
}

impl FaultRule {
    /// A rule for any method.
    pub fn new(path_contains: &str, times: u32, fault: Fault) -> Self {
        FaultRule { method: None, path_contains: path_contains.to_string(), times, fault, query_contains: None }
    }

    /// The same rule, restricted to requests whose raw query contains `part` (e.g. `comp=list`).
    pub fn query(mut self, part: &str) -> Self {
        self.query_contains = Some(part.to_string());
        self
    }

    /// The same rule, restricted to one method.
    pub fn method(mut self, method: &str) -> Self {
        self.method = Some(method.to_string());
        self
    }

    pub(super) fn matches(&self, method: &str, path: &str, query: &str) -> bool {
        self.times > 0
            && self.method.as_ref().is_none_or(|m| m.eq_ignore_ascii_case(method))
            && path.contains(&self.path_contains)
            && self.query_contains.as_ref().is_none_or(|q| query.contains(q.as_str()))
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this status (blob routes: XML error and `x-ms-error-code`; Foundry: JSON).
    Status { code: u16, retry_after: Option<String> },
    /// Send correct headers, then abort the connection after N body bytes.
    ResetAfter(u64),
    /// Declare the full Content-Length but end the body after N bytes.
    ShortBody(u64),
    /// Answer a ranged GET with 200 and the whole body.
    IgnoreRange,
    /// Send headers, then nothing for the duration, then the body.
    Stall(Duration),
    /// Answer with a different ETag than the fixture's, skipping the `If-Match` check.
    WrongEtag,
    /// Answer `302 Found` with this `Location` (and an empty body).
    Redirect(String),
    /// Answer with this status, content type and body verbatim (malformed JSON or XML, a
    /// listing that lies about sizes).
    Raw { status: u16, content_type: String, body: Vec<u8> },
    /// Answer with this status and a streamed body of `len` filler bytes (a huge error body).
    HugeBody { status: u16, len: u64 },
    /// Send the body `bytes` at a time with `every` between pieces: slow, but making progress.
    Trickle { bytes: usize, every: Duration },
}

pub(super) fn status_fault(incoming: &Incoming, code: u16, retry_after: &Option<String>) -> Reply {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut reply = if incoming.path.starts_with(&format!("/{ACCOUNT}")) {
        let error_code = match code {
            403 => "AuthenticationFailed",
            404 => "BlobNotFound",
            412 => "ConditionNotMet",
            416 => "InvalidRange",
            429 | 503 => "ServerBusy",
            500 => "InternalError",
            504 => "OperationTimedOut",
            _ => "EmulatedFault",
        };
        blob_error(status, error_code)
    } else {
        let error_code = match code {
            401 => "Unauthorized",
            403 => "Forbidden",
            404 => "NotFound",
            429 => "TooManyRequests",
            503 => "ServiceUnavailable",
            _ => "EmulatedFault",
        };
        foundry_error(status, error_code, "emulated fault")
    };
    if let Some(value) = retry_after {
        reply = reply.header("retry-after", value.clone());
    }
    reply
}

/// Passes at most `limit` bytes, then (after a pause so they are flushed) fails or ends.
pub(super) fn cut_body(body: BodyStream, limit: u64, then_error: bool) -> BodyStream {
    stream::unfold((body, 0u64, false), move |(mut body, sent, done)| async move {
        if done {
            return None;
        }
        if sent >= limit {
            tokio::time::sleep(FLUSH_PAUSE).await;
            if !then_error {
                return None;
            }
            let err = io::Error::new(io::ErrorKind::ConnectionReset, "emulated reset");
            return Some((Err(err), (body, sent, true)));
        }
        match body.next().await {
            None => None,
            Some(Err(err)) => Some((Err(err), (body, sent, true))),
            Some(Ok(chunk)) => {
                let room = limit - sent;
                let chunk = if chunk.len() as u64 > room { chunk.slice(..room as usize) } else { chunk };
                let sent = sent + chunk.len() as u64;
                Some((Ok(chunk), (body, sent, false)))
            }
        }
    })
    .boxed()
}

/// `len` bytes of `x`, streamed in 64 KiB pieces, under `status`.
pub(super) fn huge_body(status: u16, len: u64) -> Reply {
    let piece = Bytes::from(vec![b'x'; PIECE as usize]);
    let body = stream::unfold(0u64, move |sent| {
        let piece = piece.clone();
        async move {
            if sent >= len {
                return None;
            }
            let take = (len - sent).min(PIECE);
            Some((Ok(piece.slice(..take as usize)), sent + take))
        }
    })
    .boxed();
    Reply {
        status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        headers: vec![("content-type", "text/plain".to_string())],
        len,
        body,
    }
}

pub(super) fn trickle_body(body: BodyStream, bytes: usize, every: Duration) -> BodyStream {
    let bytes = bytes.max(1);
    body.flat_map(move |item| {
        let pieces: Vec<io::Result<Bytes>> = match item {
            Ok(chunk) => {
                (0..chunk.len()).step_by(bytes).map(|i| Ok(chunk.slice(i..(i + bytes).min(chunk.len())))).collect()
            }
            Err(err) => vec![Err(err)],
        };
        stream::iter(pieces)
    })
    .then(move |item| async move {
        tokio::time::sleep(every).await;
        item
    })
    .boxed()
}

pub(super) fn stall_body(body: BodyStream, pause: Duration) -> BodyStream {
    let delay = stream::once(async move {
        tokio::time::sleep(pause).await;
        Ok(Bytes::new())
    });
    delay.chain(body).boxed()
}
