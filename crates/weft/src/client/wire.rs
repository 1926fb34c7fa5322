//! Reading the admin API's HTTP/1.1 responses off a blocking `TcpStream`: the status line,
//! the headers that frame the body (`Transfer-Encoding: chunked`, `Content-Length`, or until
//! close), and the body, buffered up to a cap or streamed piece by piece. The head and every
//! chunk-size line are read against a byte budget, so a broken or hostile server cannot make
//! the CLI buffer without bound.

use std::io::{BufRead, BufReader, Read};
use std::net::TcpStream;

use anyhow::{Context, bail};

/// Cap on a response head (status line and headers).
const MAX_HEAD: usize = 64 * 1024;
/// Cap on a buffered (non-streamed) response body.
const MAX_BODY: u64 = 64 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Status {
    pub(super) code: u16,
}

impl Status {
    pub(super) fn is_success(self) -> bool {
        (200..300).contains(&self.code)
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let reason = match self.code {
            400 => " Bad Request",
            401 => " Unauthorized",
            403 => " Forbidden",
            404 => " Not Found",
            405 => " Method Not Allowed",
            409 => " Conflict",
            413 => " Payload Too Large",
            422 => " Unprocessable Entity",
            500 => " Internal Server Error",
            502 => " Bad Gateway",
            503 => " Service Unavailable",
            504 => " Gateway Timeout",
            _ => "",
        };
        write!(f, "{}{reason}", self.code)
    }
}

enum Framing {
    Chunked,
    Length(u64),
    UntilClose,
}

pub(super) struct Response {
    pub(super) status: Status,
    framing: Framing,
    reader: BufReader<TcpStream>,
}

impl Response {
    pub(super) fn read_head(mut reader: BufReader<TcpStream>) -> anyhow::Result<Response> {
        loop {
            let mut budget = MAX_HEAD;
            let status_line = read_line(&mut reader, &mut budget)?;
            let code = parse_status_line(&status_line)?;
            let mut chunked = false;
            let mut length = None;
            loop {
                let line = read_line(&mut reader, &mut budget)?;
                if line.is_empty() {
                    break;
                }
                let Some((name, value)) = line.split_once(':') else {
                    bail!("malformed header line `{}`", line.escape_debug());
                };
                let value = value.trim();
                if name.eq_ignore_ascii_case("transfer-encoding") {
                    chunked = value
                        .rsplit(',')
                        .next()
                        .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"));
                } else if name.eq_ignore_ascii_case("content-length") {
                    length = Some(
                        value
                            .parse::<u64>()
                            .with_context(|| format!("bad Content-Length `{value}`"))?,
                    );
                }
            }
            // Interim responses (100 Continue and the like) precede the real one.
            if (100..200).contains(&code) {
                continue;
            }
            let framing = if chunked {
                Framing::Chunked
            } else if code == 204 || code == 304 {
                Framing::Length(0)
            } else if let Some(n) = length {
                Framing::Length(n)
            } else {
                Framing::UntilClose
            };
            return Ok(Response {
                status: Status { code },
                framing,
                reader,
            });
        }
    }

    /// The whole body, up to `MAX_BODY`.
    pub(super) fn read_body(&mut self) -> anyhow::Result<Vec<u8>> {
        let mut body = Vec::new();
        self.stream_body(&mut |chunk| {
            if body.len() as u64 + chunk.len() as u64 > MAX_BODY {
                return Err(std::io::Error::other(format!(
                    "response body larger than {MAX_BODY} bytes"
                )));
            }
            body.extend_from_slice(chunk);
            Ok(())
        })?;
        Ok(body)
    }

    /// Hands the decoded body to `sink` piece by piece as it arrives.
    pub(super) fn stream_body(
        &mut self,
        sink: &mut dyn FnMut(&[u8]) -> std::io::Result<()>,
    ) -> anyhow::Result<()> {
        let mut buf = vec![0u8; 16 * 1024];
        match self.framing {
            Framing::Length(n) => {
                let mut left = n;
                while left > 0 {
                    let want = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                    let got = self.reader.read(&mut buf[..want])?;
                    if got == 0 {
                        bail!("the connection closed {left} bytes before the end of the body");
                    }
                    sink(&buf[..got])?;
                    left -= got as u64;
                }
            }
            Framing::UntilClose => loop {
                let got = self.reader.read(&mut buf)?;
                if got == 0 {
                    break;
                }
                sink(&buf[..got])?;
            },
            Framing::Chunked => loop {
                let mut budget = MAX_HEAD;
                let line = read_line(&mut self.reader, &mut budget)?;
                let size_hex = line.split(';').next().unwrap_or("").trim();
                let size = u64::from_str_radix(size_hex, 16)
                    .with_context(|| format!("bad chunk size `{}`", line.escape_debug()))?;
                if size == 0 {
                    // Trailers, then the blank line.
                    while !read_line(&mut self.reader, &mut budget)?.is_empty() {}
                    break;
                }
                let mut left = size;
                while left > 0 {
                    let want = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                    let got = self.reader.read(&mut buf[..want])?;
                    if got == 0 {
                        bail!("the connection closed in the middle of a chunk");
                    }
                    sink(&buf[..got])?;
                    left -= got as u64;
                }
                if !read_line(&mut self.reader, &mut budget)?.is_empty() {
                    bail!("a chunk is longer than its size says");
                }
            },
        }
        Ok(())
    }
}

/// One line without its CRLF (or LF), charged against `budget`.
fn read_line(reader: &mut BufReader<TcpStream>, budget: &mut usize) -> anyhow::Result<String> {
    let mut line = Vec::new();
    let limit = u64::try_from(*budget).unwrap_or(u64::MAX) + 1;
    let n = reader.by_ref().take(limit).read_until(b'\n', &mut line)?;
    if n == 0 {
        bail!("the connection closed early");
    }
    if line.last() != Some(&b'\n') {
        if n as u64 >= limit {
            bail!("the response head is too large");
        }
        bail!("the connection closed in the middle of a line");
    }
    *budget = budget.saturating_sub(n);
    line.pop();
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    Ok(String::from_utf8_lossy(&line).into_owned())
}

fn parse_status_line(line: &str) -> anyhow::Result<u16> {
    let mut parts = line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    let code = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/1.") {
        bail!("not an HTTP/1.x response: `{}`", line.escape_debug());
    }
    code.parse::<u16>()
        .ok()
        .filter(|c| (100..600).contains(c))
        .with_context(|| format!("bad status line `{}`", line.escape_debug()))
}
