//! HTTP/1.1 as the Docker Engine API speaks it over `docker system dial-stdio`: requests
//! encoded to bytes, and responses decoded from a byte stream as it arrives (headers by
//! `httparse`; bodies by `Content-Length` or chunked, as Go's server sends them). Pure:
//! the stream itself is `crate::exec::engine`'s.
//!
//! Every part of an answer is bounded ([`Limits`], the body by its request's kind) and each
//! byte is decoded once, however the answer is cut into chunks.
//!
//! Requests on one connection are answered in order, so several written at once
//! (pipelined) are read back in the order written: a poll that needs three answers costs
//! one round trip.

use std::collections::VecDeque;

/// One request. `path` holds the query string, already encoded. Its `Debug` leaves the
/// body out: a join request carries a token.
#[derive(Clone, PartialEq, Eq)]
pub struct Request {
    pub method: &'static str,
    pub path: String,
    /// A JSON body.
    pub body: Option<Vec<u8>>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let body = self.body.as_ref().map(|b| format!("<{} bytes>", b.len()));
        f.debug_struct("Request")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("body", &body)
            .finish()
    }
}

impl Request {
    pub fn get(path: impl Into<String>) -> Request {
        Request {
            method: "GET",
            path: path.into(),
            body: None,
        }
    }

    pub fn post(path: impl Into<String>, body: Option<Vec<u8>>) -> Request {
        Request {
            method: "POST",
            path: path.into(),
            body,
        }
    }

    pub fn delete(path: impl Into<String>) -> Request {
        Request {
            method: "DELETE",
            path: path.into(),
            body: None,
        }
    }

    /// The bytes on the wire. The host name is a placeholder: the socket decides.
    pub fn encode(&self) -> Vec<u8> {
        let mut head = format!(
            "{} {} HTTP/1.1\r\nHost: docker\r\nUser-Agent: rpiprov\r\n",
            self.method, self.path
        );
        match &self.body {
            Some(b) => head.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                b.len()
            )),
            None if matches!(self.method, "GET" | "DELETE") => head.push_str("\r\n"),
            None => head.push_str("Content-Length: 0\r\n\r\n"),
        }
        let mut bytes = head.into_bytes();
        if let Some(b) = &self.body {
            bytes.extend_from_slice(b);
        }
        bytes
    }
}

/// One answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Response {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// What one answer may take of this machine: every part of it is bounded, so that a
/// daemon (or whatever answers in its place on a compromised host) cannot make rpiprov
/// hold more than this for an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The status line and headers.
    pub head: usize,
    /// One chunk-size line, its extensions included (Go's server sends none).
    pub chunk_line: usize,
    /// The trailers of a chunked body (Go's server sends none).
    pub trailers: usize,
    /// The body, when the request's kind does not say ([`body_limit`]).
    pub body: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            head: 64 * 1024,
            chunk_line: 4096,
            trailers: 64 * 1024,
            body: LIST_BODY,
        }
    }
}

/// A list of a big swarm's objects (its task list is a few MiB).
const LIST_BODY: usize = 64 * 1024 * 1024;
/// One object's inspection.
const OBJECT_BODY: usize = 8 * 1024 * 1024;
/// A version, the daemon's information, the answer to a change (an id, an error).
const SMALL_BODY: usize = 1024 * 1024;

/// The largest body accepted in answer to `req`, by its kind: lists, one object, or the
/// small answers (the daemon's version and information, and every change's).
pub fn body_limit(req: &Request) -> usize {
    let path = req.path.split('?').next().unwrap_or_default();
    // `/v1.41/nodes` and `/nodes` alike.
    let path = match path.strip_prefix("/v") {
        Some(rest) if rest.starts_with(|c: char| c.is_ascii_digit()) => {
            rest.find('/').map_or("", |i| &rest[i..])
        }
        _ => path,
    };
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match (req.method, segments.as_slice()) {
        ("GET", ["_ping" | "version" | "info"]) => SMALL_BODY,
        (
            "GET",
            ["nodes" | "services" | "tasks" | "networks" | "secrets" | "configs" | "volumes"]
            | ["containers" | "images", "json"],
        ) => LIST_BODY,
        ("GET", _) => OBJECT_BODY,
        _ => SMALL_BODY,
    }
}

/// Decodes responses from bytes as they arrive, each byte looked at once (a body in
/// one-byte chunks costs what the same body in one chunk does), every part of an answer
/// bounded by [`Limits`] and the body by its request's kind ([`Decoder::expect`]).
#[derive(Debug, Default)]
pub struct Decoder {
    /// Bytes not decoded yet start at `at`.
    buf: Vec<u8>,
    at: usize,
    /// How far past `at` a search for a line's end has looked already.
    scanned: usize,
    state: State,
    limits: Limits,
    /// The body limits of the answers awaited, in order.
    expected: VecDeque<usize>,
}

/// Where the decoding of the current answer stands.
#[derive(Debug, Default)]
enum State {
    #[default]
    Head,
    Fixed {
        status: u16,
        body: Vec<u8>,
        remaining: usize,
    },
    ChunkSize {
        status: u16,
        body: Vec<u8>,
        limit: usize,
    },
    ChunkData {
        status: u16,
        body: Vec<u8>,
        limit: usize,
        remaining: usize,
    },
    ChunkEnd {
        status: u16,
        body: Vec<u8>,
        limit: usize,
    },
    Trailers {
        status: u16,
        body: Vec<u8>,
        taken: usize,
    },
}

/// How a body is delimited.
enum Body {
    Length(usize),
    Chunked,
    /// Until the connection closes (no length, not chunked): not used by Docker's API for
    /// the answers rpiprov reads; refused rather than guessed.
    Unframed,
}

/// What one step of decoding did.
enum Step {
    /// More bytes are needed.
    Wait,
    /// The state moved on; decode again.
    Go,
    Done(Response),
}

impl Decoder {
    /// A decoder with these bounds.
    pub fn new(limits: Limits) -> Decoder {
        Decoder {
            limits,
            ..Decoder::default()
        }
    }

    /// Says that `req` was written: its answer's body is bounded by its kind
    /// ([`body_limit`]). Answers without one are bounded by [`Limits::body`].
    pub fn expect(&mut self, req: &Request) {
        self.expected.push_back(body_limit(req));
    }

    pub fn push(&mut self, bytes: &[u8]) {
        // Decoded bytes go once they are half the buffer: each byte is moved at most a
        // bounded number of times.
        if self.at > 0 && self.at >= self.buf.len() / 2 {
            self.buf.drain(..self.at);
            self.at = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole response, if the bytes so far hold one. An error means the stream
    /// cannot be read any further.
    pub fn next_response(&mut self) -> Result<Option<Response>, String> {
        loop {
            match self.step()? {
                Step::Wait => return Ok(None),
                Step::Go => {}
                Step::Done(r) => {
                    self.expected.pop_front();
                    return Ok(Some(r));
                }
            }
        }
    }

    fn available(&self) -> &[u8] {
        &self.buf[self.at..]
    }

    /// The end (after its `\r\n`) of the line that starts at `at`, relative to `at`,
    /// searching only bytes not searched before; `Err` when the line would be longer
    /// than `max`.
    fn line_end(&mut self, max: usize, what: &str) -> Result<Option<usize>, String> {
        let from = self.scanned.saturating_sub(1);
        let found = self.available()[from..]
            .windows(2)
            .position(|w| w == b"\r\n")
            .map(|i| from + i + 2);
        match found {
            Some(end) if end > max => Err(format!("{what} longer than {max} bytes")),
            Some(end) => {
                self.scanned = 0;
                Ok(Some(end))
            }
            None if self.available().len() > max => Err(format!("{what} longer than {max} bytes")),
            None => {
                self.scanned = self.available().len();
                Ok(None)
            }
        }
    }

    fn consume(&mut self, n: usize) {
        self.at += n;
        self.scanned = 0;
    }

    fn step(&mut self) -> Result<Step, String> {
        match std::mem::take(&mut self.state) {
            State::Head => self.head(),
            State::Fixed {
                status,
                mut body,
                remaining,
            } => {
                let n = remaining.min(self.available().len());
                body.extend_from_slice(&self.available()[..n]);
                self.consume(n);
                if n == remaining {
                    return Ok(Step::Done(Response { status, body }));
                }
                self.state = State::Fixed {
                    status,
                    body,
                    remaining: remaining - n,
                };
                Ok(Step::Wait)
            }
            State::ChunkSize {
                status,
                body,
                limit,
            } => self.chunk_size(status, body, limit),
            State::ChunkData {
                status,
                mut body,
                limit,
                remaining,
            } => {
                let n = remaining.min(self.available().len());
                body.extend_from_slice(&self.available()[..n]);
                self.consume(n);
                self.state = if n == remaining {
                    State::ChunkEnd {
                        status,
                        body,
                        limit,
                    }
                } else {
                    State::ChunkData {
                        status,
                        body,
                        limit,
                        remaining: remaining - n,
                    }
                };
                Ok(if n == remaining { Step::Go } else { Step::Wait })
            }
            State::ChunkEnd {
                status,
                body,
                limit,
            } => {
                let avail = self.available();
                if avail.len() < 2 {
                    self.state = State::ChunkEnd {
                        status,
                        body,
                        limit,
                    };
                    return Ok(Step::Wait);
                }
                if &avail[..2] != b"\r\n" {
                    return Err("a chunk not followed by its line end".into());
                }
                self.consume(2);
                self.state = State::ChunkSize {
                    status,
                    body,
                    limit,
                };
                Ok(Step::Go)
            }
            State::Trailers {
                status,
                body,
                taken,
            } => {
                let max = self.limits.trailers - taken;
                let Some(end) = self.line_end(max, "the answer's trailers")? else {
                    self.state = State::Trailers {
                        status,
                        body,
                        taken,
                    };
                    return Ok(Step::Wait);
                };
                self.consume(end);
                if end == 2 {
                    return Ok(Step::Done(Response { status, body }));
                }
                self.state = State::Trailers {
                    status,
                    body,
                    taken: taken + end,
                };
                Ok(Step::Go)
            }
        }
    }

    /// The status line and headers, once they are all there: how the body comes.
    fn head(&mut self) -> Result<Step, String> {
        let from = self.scanned.saturating_sub(3);
        let end = self.available()[from..]
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map(|i| from + i + 4);
        let Some(end) = end.filter(|e| *e <= self.limits.head) else {
            if self.available().len() > self.limits.head || end.is_some() {
                return Err("the answer's headers are too long".into());
            }
            // Not even a status line: no HTTP answer will come (the relay said why).
            if self.available().len() >= 5 && !self.available().starts_with(b"HTTP/") {
                return Err("not an HTTP answer".into());
            }
            self.scanned = self.available().len();
            return Ok(Step::Wait);
        };
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut res = httparse::Response::new(&mut headers);
        match res.parse(&self.available()[..end]) {
            Ok(httparse::Status::Complete(_)) => {}
            Ok(httparse::Status::Partial) => return Err("not an HTTP answer".into()),
            Err(e) => return Err(format!("not an HTTP answer ({e})")),
        }
        let status = res.code.unwrap_or(0);
        let framing = framing(status, res.headers)?;
        self.consume(end);
        let limit = self.expected.front().copied().unwrap_or(self.limits.body);
        self.state = match framing {
            Body::Length(n) if n > limit => {
                return Err(format!(
                    "an answer of {n} bytes, more than the {limit} rpiprov reads for this request"
                ));
            }
            Body::Length(n) => State::Fixed {
                status,
                body: Vec::with_capacity(n.min(1 << 20)),
                remaining: n,
            },
            Body::Chunked => State::ChunkSize {
                status,
                body: Vec::new(),
                limit,
            },
            Body::Unframed => {
                return Err(format!(
                    "an answer (status {status}) with neither a length nor chunks"
                ));
            }
        };
        Ok(Step::Go)
    }

    /// One chunk-size line (extensions ignored, but bounded).
    fn chunk_size(&mut self, status: u16, body: Vec<u8>, limit: usize) -> Result<Step, String> {
        let max = self.limits.chunk_line;
        let Some(end) = self.line_end(max, "a chunk-size line")? else {
            self.state = State::ChunkSize {
                status,
                body,
                limit,
            };
            return Ok(Step::Wait);
        };
        let size = match httparse::parse_chunk_size(&self.available()[..end]) {
            Ok(httparse::Status::Complete((_, size))) => size,
            _ => return Err("a bad chunk size".into()),
        };
        self.consume(end);
        if size == 0 {
            self.state = State::Trailers {
                status,
                body,
                taken: 0,
            };
            return Ok(Step::Go);
        }
        let size = usize::try_from(size)
            .ok()
            .filter(|s| body.len().saturating_add(*s) <= limit)
            .ok_or_else(|| {
                format!("an answer of more than the {limit} bytes rpiprov reads for this request")
            })?;
        self.state = State::ChunkData {
            status,
            body,
            limit,
            remaining: size,
        };
        Ok(Step::Go)
    }
}

/// How the body of an answer with these headers is delimited.
fn framing(status: u16, headers: &[httparse::Header]) -> Result<Body, String> {
    if matches!(status, 100..=199 | 204 | 304) {
        return Ok(Body::Length(0));
    }
    let mut framing = Body::Unframed;
    let mut length: Option<usize> = None;
    for h in headers {
        if h.name.eq_ignore_ascii_case("content-length") {
            let n = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .ok_or("a bad Content-Length")?;
            if length.is_some_and(|l| l != n) {
                return Err("two different Content-Lengths".into());
            }
            length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding")
            && String::from_utf8_lossy(h.value)
                .to_ascii_lowercase()
                .contains("chunked")
        {
            framing = Body::Chunked;
        }
    }
    Ok(match (framing, length) {
        (Body::Chunked, _) => Body::Chunked,
        (_, Some(n)) => Body::Length(n),
        (f, None) => f,
    })
}

/// Percent-encodes a query value (RFC 3986 unreserved characters stay).
pub fn encode_query(value: &str) -> String {
    let mut out = String::with_capacity(value.len() * 2);
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_encoded() {
        assert_eq!(
            String::from_utf8(Request::get("/v1.41/info").encode()).unwrap(),
            "GET /v1.41/info HTTP/1.1\r\nHost: docker\r\nUser-Agent: rpiprov\r\n\r\n"
        );
        assert_eq!(
            String::from_utf8(Request::post("/x", Some(b"{}".to_vec())).encode()).unwrap(),
            "POST /x HTTP/1.1\r\nHost: docker\r\nUser-Agent: rpiprov\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
        );
        assert_eq!(
            encode_query("{\"label\":{\"a=b c\":true}}"),
            "%7B%22label%22%3A%7B%22a%3Db%20c%22%3Atrue%7D%7D"
        );
    }

    /// Two answers in one stream, cut at every byte: a length-framed one and a chunked
    /// one (as Go's server sends a large JSON answer), then a 204 without a body.
    #[test]
    fn responses_are_decoded_whatever_the_cuts() {
        let stream = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 4\r\n\r\n[1]\n\
HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"mes\r\n10\r\nsage\":\"no such\"}\r\n0\r\n\r\n\
HTTP/1.1 204 No Content\r\nServer: Docker\r\n\r\n";
        for cut in 0..stream.len() {
            let mut d = Decoder::default();
            let mut got = Vec::new();
            d.push(&stream[..cut]);
            while let Some(r) = d.next_response().unwrap() {
                got.push(r);
            }
            d.push(&stream[cut..]);
            while let Some(r) = d.next_response().unwrap() {
                got.push(r);
            }
            assert_eq!(
                got,
                vec![
                    Response {
                        status: 200,
                        body: b"[1]\n".to_vec()
                    },
                    Response {
                        status: 404,
                        body: b"{\"message\":\"no such\"}".to_vec()
                    },
                    Response {
                        status: 204,
                        body: vec![]
                    },
                ],
                "cut at {cut}"
            );
        }
    }

    /// Issue 18 item 4: every part of an answer is bounded, each with its own error: the
    /// headers, a chunk-size line (extensions), the trailers, and the body by the
    /// request's kind, chunked or not.
    #[test]
    fn every_part_of_an_answer_is_bounded() {
        let limits = Limits {
            head: 64,
            chunk_line: 16,
            trailers: 32,
            body: 100,
        };
        let decode = |wire: &[u8], expect: Option<Request>| {
            let mut d = Decoder::new(limits);
            if let Some(r) = &expect {
                d.expect(r);
            }
            // Fed a byte at a time: the error comes as soon as the bound is passed.
            for (i, b) in wire.iter().enumerate() {
                d.push(std::slice::from_ref(b));
                match d.next_response() {
                    Ok(Some(r)) => return Ok((r, i + 1)),
                    Ok(None) => {}
                    Err(e) => return Err((e, i + 1)),
                }
            }
            Err(("incomplete".into(), wire.len()))
        };
        let chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        let long_head = format!("HTTP/1.1 200 OK\r\nX: {}\r\n\r\n", "a".repeat(100));
        assert_eq!(
            decode(long_head.as_bytes(), None).unwrap_err(),
            ("the answer's headers are too long".into(), 65)
        );
        let ext = format!("{chunked}1;{}\r\nx\r\n0\r\n\r\n", "e".repeat(100));
        let at = chunked.len() + 17;
        assert_eq!(
            decode(ext.as_bytes(), None).unwrap_err(),
            ("a chunk-size line longer than 16 bytes".into(), at)
        );
        let trailers = format!("{chunked}1\r\nx\r\n0\r\nT: {}\r\n\r\n", "t".repeat(100));
        assert_eq!(
            decode(trailers.as_bytes(), None).unwrap_err().0,
            "the answer's trailers longer than 32 bytes"
        );
        let fine = format!("{chunked}1;ext=1\r\nx\r\n0\r\nT: 1\r\n\r\n");
        assert_eq!(decode(fine.as_bytes(), None).unwrap().0.body, b"x");
        let big = "HTTP/1.1 200 OK\r\nContent-Length: 101\r\n\r\n";
        assert_eq!(
            decode(big.as_bytes(), None).unwrap_err().0,
            "an answer of 101 bytes, more than the 100 rpiprov reads for this request"
        );
        let chunks = format!("{chunked}{}", "10\r\n0123456789abcdef\r\n".repeat(7));
        assert_eq!(
            decode(chunks.as_bytes(), None).unwrap_err().0,
            "an answer of more than the 100 bytes rpiprov reads for this request"
        );
        // The request's kind: the daemon's information is small.
        let info = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", 2 << 20);
        let mut d = Decoder::default();
        d.expect(&Request::get("/v1.41/info"));
        d.push(info.as_bytes());
        assert_eq!(
            d.next_response().unwrap_err(),
            "an answer of 2097152 bytes, more than the 1048576 rpiprov reads for this request"
        );
    }

    #[test]
    fn body_limits_follow_the_request_kind() {
        let get = |p: &str| body_limit(&Request::get(p));
        assert_eq!(get("/v1.41/info"), SMALL_BODY);
        assert_eq!(get("/_ping"), SMALL_BODY);
        assert_eq!(get("/v1.41/version"), SMALL_BODY);
        assert_eq!(get("/v1.41/nodes"), LIST_BODY);
        assert_eq!(get("/v1.41/tasks?filters=%7B%7D"), LIST_BODY);
        assert_eq!(get("/v1.41/containers/json"), LIST_BODY);
        assert_eq!(get("/v1.41/services/web_app"), OBJECT_BODY);
        assert_eq!(get("/v1.41/swarm"), OBJECT_BODY);
        assert_eq!(
            body_limit(&Request::post("/v1.41/swarm/join", None)),
            SMALL_BODY
        );
        assert_eq!(body_limit(&Request::delete("/v1.41/nodes/n1")), SMALL_BODY);
    }

    #[test]
    fn garbage_is_an_error_not_a_hang() {
        let mut d = Decoder::default();
        d.push(b"docker: 'system dial-stdio' is not a docker command.\n");
        assert!(d.next_response().is_err());
        let mut d = Decoder::default();
        d.push(b"HTTP/1.1 200 OK\r\n\r\nrest");
        assert!(
            d.next_response()
                .unwrap_err()
                .contains("neither a length nor chunks")
        );
    }
}
