//! HTTP/1.1 as the Docker Engine API speaks it over `docker system dial-stdio`: requests
//! encoded to bytes, and responses decoded from a byte stream as it arrives (headers by
//! `httparse`; bodies by `Content-Length` or chunked, as Go's server sends them). Pure:
//! the stream itself is `crate::exec::engine`'s.
//!
//! Requests on one connection are answered in order, so several written at once
//! (pipelined) are read back in the order written: a poll that needs three answers costs
//! one round trip.

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

/// Longest header block accepted.
const MAX_HEAD: usize = 64 * 1024;
/// Largest body accepted: a big swarm's task list is a few MiB.
const MAX_BODY: usize = 64 * 1024 * 1024;

/// Decodes responses from bytes as they arrive.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
}

enum Body {
    Length(usize),
    Chunked,
    /// Until the connection closes (no length, not chunked): not used by Docker's API for
    /// the answers rpiprov reads; refused rather than guessed.
    Unframed,
}

impl Decoder {
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole response, if the bytes so far hold one. An error means the stream
    /// cannot be read any further.
    pub fn next_response(&mut self) -> Result<Option<Response>, String> {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut res = httparse::Response::new(&mut headers);
        let head_len = match res.parse(&self.buf) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) if self.buf.len() > MAX_HEAD => {
                return Err("the answer's headers are too long".into());
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(e) => return Err(format!("not an HTTP answer ({e})")),
        };
        let status = res.code.unwrap_or(0);
        let mut framing = Body::Unframed;
        for h in res.headers.iter() {
            if h.name.eq_ignore_ascii_case("content-length") {
                let n = std::str::from_utf8(h.value)
                    .ok()
                    .and_then(|v| v.trim().parse().ok())
                    .ok_or("a bad Content-Length")?;
                framing = Body::Length(n);
            } else if h.name.eq_ignore_ascii_case("transfer-encoding")
                && String::from_utf8_lossy(h.value)
                    .to_ascii_lowercase()
                    .contains("chunked")
            {
                framing = Body::Chunked;
            }
        }
        if matches!(status, 100..=199 | 204 | 304) {
            framing = Body::Length(0);
        }
        let (body, used) = match framing {
            Body::Length(n) if n > MAX_BODY => return Err(format!("an answer of {n} bytes")),
            Body::Length(n) => {
                if self.buf.len() < head_len + n {
                    return Ok(None);
                }
                (self.buf[head_len..head_len + n].to_vec(), head_len + n)
            }
            Body::Chunked => match dechunk(&self.buf[head_len..])? {
                Some((body, n)) => (body, head_len + n),
                None => return Ok(None),
            },
            Body::Unframed => {
                return Err(format!(
                    "an answer (status {status}) with neither a length nor chunks"
                ));
            }
        };
        self.buf.drain(..used);
        Ok(Some(Response { status, body }))
    }
}

/// A chunked body: the data and how many bytes it took, or `None` when incomplete.
fn dechunk(buf: &[u8]) -> Result<Option<(Vec<u8>, usize)>, String> {
    let mut body = Vec::new();
    let mut at = 0;
    loop {
        let (size_len, size) = match httparse::parse_chunk_size(&buf[at..]) {
            Ok(httparse::Status::Complete(x)) => x,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(_) => return Err("a bad chunk size".into()),
        };
        at += size_len;
        if size == 0 {
            // Trailers, if any, end with an empty line.
            loop {
                let Some(nl) = buf[at..].windows(2).position(|w| w == b"\r\n") else {
                    return Ok(None);
                };
                at += nl + 2;
                if nl == 0 {
                    return Ok(Some((body, at)));
                }
            }
        }
        let size = usize::try_from(size).map_err(|_| "a chunk too large")?;
        if body.len() + size > MAX_BODY {
            return Err("an answer too large".into());
        }
        if buf.len() < at + size + 2 {
            return Ok(None);
        }
        body.extend_from_slice(&buf[at..at + size]);
        at += size + 2;
    }
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
