//! A small PostgreSQL client over one `wasi:sockets@0.3.0` TCP connection.
//!
//! The wire format (message framing, SCRAM-SHA-256) is the `postgres-protocol` crate's; the
//! connection, the authentication exchange and the query cycle are ours. Queries use the
//! extended protocol with every value bound as a text parameter (`Parse`/`Bind`/`Execute`/
//! `Sync` in one write, so one round trip), and rows come back as text. The only statements
//! sent with the simple protocol are the fixed schema statements, which carry no input.

use std::fmt;
use std::net::SocketAddrV4;

use bytes::BytesMut;
use fallible_iterator::FallibleIterator;
use postgres_protocol::IsNull;
use postgres_protocol::authentication::md5_hash;
use postgres_protocol::authentication::sasl::{ChannelBinding, SCRAM_SHA_256, ScramSha256};
use postgres_protocol::message::backend::{ErrorFields, Message};
use postgres_protocol::message::frontend;
use wit_bindgen::{FutureReader, StreamReader, StreamResult, StreamWriter};

use crate::wasi::sockets::types::{ErrorCode, IpAddressFamily, IpSocketAddress, Ipv4SocketAddress, TcpSocket};

/// Where and as whom to connect.
#[derive(Clone)]
pub struct Config {
    pub addr: SocketAddrV4,
    pub user: String,
    pub password: String,
    pub database: String,
}

/// Why a connection or a query failed.
#[derive(Debug)]
pub enum Error {
    /// The connection could not be made, or broke. `before_reply`: nothing of the reply to
    /// the current request had been read (so the server never ran it).
    Io { what: String, before_reply: bool },
    /// The server answered with an error.
    Server {
        severity: String,
        code: String,
        message: String,
        before_reply: bool,
    },
    /// The server sent something this client does not expect.
    Protocol(String),
}

impl Error {
    /// True when an idle connection was found dead on its first use: the server closed it
    /// (a restart, an idle timeout, `pg_terminate_backend`) before it saw the request, so the
    /// request can be sent again on a new connection without running twice.
    pub fn is_stale(&self) -> bool {
        match self {
            Error::Io { before_reply, .. } => *before_reply,
            // 57P01 admin_shutdown, 57P02 crash_shutdown, 57P03 cannot_connect_now, 57P05
            // idle_session_timeout: sent to idle sessions as the server drops them.
            Error::Server {
                code, before_reply, ..
            } => *before_reply && code.starts_with("57P"),
            Error::Protocol(_) => false,
        }
    }

    /// The SQLSTATE of a server error.
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            Error::Server { code, .. } => Some(code),
            _ => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { what, .. } => f.write_str(what),
            Error::Server {
                severity,
                code,
                message,
                ..
            } => write!(f, "{severity} {code}: {message}"),
            Error::Protocol(m) => write!(f, "protocol error: {m}"),
        }
    }
}

fn protocol(e: impl fmt::Display) -> Error {
    Error::Protocol(e.to_string())
}

/// The name of a `wasi:sockets` error code, as the host reports it.
pub fn code_name(e: &ErrorCode) -> String {
    let name = match e {
        ErrorCode::AccessDenied => "access-denied",
        ErrorCode::NotSupported => "not-supported",
        ErrorCode::InvalidArgument => "invalid-argument",
        ErrorCode::OutOfMemory => "out-of-memory",
        ErrorCode::Timeout => "timeout",
        ErrorCode::InvalidState => "invalid-state",
        ErrorCode::AddressNotBindable => "address-not-bindable",
        ErrorCode::AddressInUse => "address-in-use",
        ErrorCode::RemoteUnreachable => "remote-unreachable",
        ErrorCode::ConnectionRefused => "connection-refused",
        ErrorCode::ConnectionBroken => "connection-broken",
        ErrorCode::ConnectionReset => "connection-reset",
        ErrorCode::ConnectionAborted => "connection-aborted",
        ErrorCode::DatagramTooLarge => "datagram-too-large",
        ErrorCode::Other(Some(s)) => return format!("other({s})"),
        ErrorCode::Other(None) => "other",
    };
    name.to_string()
}

/// A server error from an `ErrorResponse`'s fields.
fn server_error(mut fields: ErrorFields<'_>, before_reply: bool) -> Error {
    let (mut severity, mut code, mut message) = (String::new(), String::new(), String::new());
    while let Ok(Some(field)) = fields.next() {
        match field.type_() {
            b'S' => severity = String::from_utf8_lossy(field.value_bytes()).into_owned(),
            b'C' => code = String::from_utf8_lossy(field.value_bytes()).into_owned(),
            b'M' => message = String::from_utf8_lossy(field.value_bytes()).into_owned(),
            _ => {}
        }
    }
    Error::Server {
        severity,
        code,
        message,
        before_reply,
    }
}

/// What a query returned: its rows (every column as text, `None` for NULL) and the number of
/// rows the command touched.
pub struct Reply {
    pub rows: Vec<Vec<Option<String>>>,
    pub affected: u64,
}

/// One open, authenticated connection.
pub struct Conn {
    tx: StreamWriter<u8>,
    rx: StreamReader<u8>,
    inbuf: BytesMut,
    out: BytesMut,
    eof: bool,
    broken: bool,
    // Kept for the life of the connection: dropping the socket closes it, and the futures
    // report how the send and receive streams ended (unused: a broken stream is enough).
    _send_done: FutureReader<Result<(), ErrorCode>>,
    _recv_done: FutureReader<Result<(), ErrorCode>>,
    _sock: TcpSocket,
}

/// Opens a connection to `cfg.addr`, authenticates (SCRAM-SHA-256, MD5 or trust) and waits
/// until the server is ready for queries.
pub async fn connect(cfg: &Config) -> Result<Conn, Error> {
    let io = |what: String| Error::Io {
        what,
        before_reply: false,
    };
    let sock = TcpSocket::create(IpAddressFamily::Ipv4)
        .map_err(|e| io(format!("create a socket: {}", code_name(&e))))?;
    let [a, b, c, d] = cfg.addr.ip().octets();
    let remote = IpSocketAddress::Ipv4(Ipv4SocketAddress {
        port: cfg.addr.port(),
        address: (a, b, c, d),
    });
    sock.connect(remote)
        .await
        .map_err(|e| io(format!("connect {}: {}", cfg.addr, code_name(&e))))?;
    let (tx, data) = crate::wit_stream::new::<u8>();
    let send_done = sock.send(data);
    let (rx, recv_done) = sock.receive();
    let mut conn = Conn {
        tx,
        rx,
        inbuf: BytesMut::with_capacity(16 * 1024),
        out: BytesMut::with_capacity(4 * 1024),
        eof: false,
        broken: false,
        _send_done: send_done,
        _recv_done: recv_done,
        _sock: sock,
    };
    conn.startup(cfg).await.map_err(|e| match e {
        // Nothing was running yet: a failure here is never "stale", whatever was read.
        Error::Io { what, .. } => io(format!("{what} (while logging in)")),
        Error::Server {
            severity,
            code,
            message,
            ..
        } => Error::Server {
            severity,
            code,
            message,
            before_reply: false,
        },
        other => other,
    })?;
    Ok(conn)
}

impl Conn {
    /// True once the connection cannot be used again (closed, broken, out of sync).
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    async fn startup(&mut self, cfg: &Config) -> Result<(), Error> {
        frontend::startup_message(
            [
                ("user", cfg.user.as_str()),
                ("database", cfg.database.as_str()),
                ("application_name", "weft-todo"),
                ("client_encoding", "UTF8"),
            ],
            &mut self.out,
        )
        .map_err(protocol)?;
        self.flush().await?;
        let mut scram: Option<ScramSha256> = None;
        loop {
            match self.read_message(false).await? {
                Message::AuthenticationOk => {}
                Message::AuthenticationSasl(body) => {
                    let mut mechanisms = body.mechanisms();
                    let mut offered = Vec::new();
                    while let Some(m) = mechanisms.next().map_err(protocol)? {
                        offered.push(m.to_string());
                    }
                    if !offered.iter().any(|m| m == SCRAM_SHA_256) {
                        return Err(Error::Protocol(format!(
                            "the server offers SASL mechanisms {offered:?}, not {SCRAM_SHA_256}"
                        )));
                    }
                    // No TLS, so no channel binding.
                    let s = ScramSha256::new(cfg.password.as_bytes(), ChannelBinding::unsupported());
                    frontend::sasl_initial_response(SCRAM_SHA_256, s.message(), &mut self.out)
                        .map_err(protocol)?;
                    scram = Some(s);
                    self.flush().await?;
                }
                Message::AuthenticationSaslContinue(body) => {
                    let s = scram
                        .as_mut()
                        .ok_or_else(|| Error::Protocol("SASL continue before SASL start".into()))?;
                    s.update(body.data())
                        .map_err(|e| Error::Protocol(format!("SCRAM: {e}")))?;
                    frontend::sasl_response(s.message(), &mut self.out).map_err(protocol)?;
                    self.flush().await?;
                }
                Message::AuthenticationSaslFinal(body) => {
                    // Checks the server's signature: it proves the server knows the password.
                    scram
                        .as_mut()
                        .ok_or_else(|| Error::Protocol("SASL final before SASL start".into()))?
                        .finish(body.data())
                        .map_err(|e| Error::Protocol(format!("SCRAM: {e}")))?;
                }
                Message::AuthenticationMd5Password(body) => {
                    let hash = md5_hash(cfg.user.as_bytes(), cfg.password.as_bytes(), body.salt());
                    frontend::password_message(hash.as_bytes(), &mut self.out).map_err(protocol)?;
                    self.flush().await?;
                }
                Message::AuthenticationCleartextPassword => {
                    return Err(Error::Protocol(
                        "the server asks for a cleartext password; configure scram-sha-256".into(),
                    ));
                }
                Message::ErrorResponse(body) => {
                    self.broken = true;
                    return Err(server_error(body.fields(), false));
                }
                Message::ReadyForQuery(_) => return Ok(()),
                Message::ParameterStatus(_)
                | Message::BackendKeyData(_)
                | Message::NoticeResponse(_) => {}
                _ => {
                    self.broken = true;
                    return Err(Error::Protocol("unexpected message while logging in".into()));
                }
            }
        }
    }

    /// Runs one statement with bound text parameters (`None` is SQL NULL). Every statement
    /// names its parameter types with casts (`$1::bigint`), so the server never guesses.
    pub async fn query(&mut self, sql: &str, params: &[Option<&str>]) -> Result<Reply, Error> {
        frontend::parse("", sql, std::iter::empty(), &mut self.out).map_err(protocol)?;
        frontend::bind(
            "",
            "",
            std::iter::empty(), // every parameter in text format
            params.iter(),
            |p, buf| match p {
                Some(text) => {
                    buf.extend_from_slice(text.as_bytes());
                    Ok(IsNull::No)
                }
                None => Ok(IsNull::Yes),
            },
            std::iter::empty(), // every result column in text format
            &mut self.out,
        )
        .map_err(|e| {
            Error::Protocol(match e {
                frontend::BindError::Conversion(e) => format!("bind: {e}"),
                frontend::BindError::Serialization(e) => format!("bind: {e}"),
            })
        })?;
        frontend::execute("", 0, &mut self.out).map_err(protocol)?;
        frontend::sync(&mut self.out);
        self.flush().await?;
        self.read_reply().await
    }

    /// Runs fixed SQL (no parameters, possibly several statements) with the simple protocol.
    pub async fn simple(&mut self, sql: &str) -> Result<Reply, Error> {
        frontend::query(sql, &mut self.out).map_err(protocol)?;
        self.flush().await?;
        self.read_reply().await
    }

    /// Reads a reply up to `ReadyForQuery`. A server error is returned after the reply ends
    /// (the connection stays usable), unless it is FATAL (the server closes it).
    async fn read_reply(&mut self) -> Result<Reply, Error> {
        let mut reply = Reply {
            rows: Vec::new(),
            affected: 0,
        };
        let mut failed: Option<Error> = None;
        let mut replied = false;
        loop {
            let message = match self.read_message(replied).await {
                Ok(m) => m,
                Err(e) => {
                    self.broken = true;
                    return Err(e);
                }
            };
            match message {
                Message::ParseComplete | Message::BindComplete | Message::EmptyQueryResponse => {
                    replied = true
                }
                Message::RowDescription(_) | Message::NoData => replied = true,
                Message::DataRow(row) => {
                    replied = true;
                    let buffer = row.buffer();
                    let mut ranges = row.ranges();
                    let mut values = Vec::new();
                    while let Some(range) = ranges.next().map_err(protocol)? {
                        values.push(match range {
                            Some(r) => Some(
                                std::str::from_utf8(buffer.get(r).unwrap_or_default())
                                    .map_err(protocol)?
                                    .to_string(),
                            ),
                            None => None,
                        });
                    }
                    reply.rows.push(values);
                }
                Message::CommandComplete(body) => {
                    replied = true;
                    let tag = body.tag().map_err(protocol)?;
                    // `INSERT 0 N`, `UPDATE N`, `DELETE N`, `SELECT N`: the count is last.
                    reply.affected = tag
                        .rsplit(' ')
                        .next()
                        .and_then(|n| n.parse().ok())
                        .unwrap_or(0);
                }
                Message::ErrorResponse(body) => {
                    let error = server_error(body.fields(), !replied);
                    replied = true;
                    if let Error::Server { severity, .. } = &error
                        && (severity == "FATAL" || severity == "PANIC")
                    {
                        self.broken = true;
                        return Err(error);
                    }
                    failed.get_or_insert(error);
                }
                Message::ReadyForQuery(_) => {
                    return match failed {
                        Some(e) => Err(e),
                        None => Ok(reply),
                    };
                }
                Message::NoticeResponse(_)
                | Message::ParameterStatus(_)
                | Message::NotificationResponse(_) => {}
                _ => {
                    self.broken = true;
                    return Err(Error::Protocol("unexpected message in a reply".into()));
                }
            }
        }
    }

    /// Says goodbye (`Terminate`); the socket closes when the connection is dropped.
    pub async fn close(mut self) {
        frontend::terminate(&mut self.out);
        let _ = self.flush().await;
    }

    async fn flush(&mut self) -> Result<(), Error> {
        let data = self.out.split().to_vec();
        let rest = self.tx.write_all(data).await;
        if !rest.is_empty() {
            self.broken = true;
            return Err(Error::Io {
                what: "the server closed the connection (write failed)".into(),
                before_reply: true,
            });
        }
        Ok(())
    }

    /// The next backend message. `replied`: part of the current reply was read already.
    async fn read_message(&mut self, replied: bool) -> Result<Message, Error> {
        loop {
            if let Some(message) = Message::parse(&mut self.inbuf).map_err(protocol)? {
                return Ok(message);
            }
            if self.eof {
                self.broken = true;
                return Err(Error::Io {
                    what: "the server closed the connection".into(),
                    before_reply: !replied,
                });
            }
            let (result, data) = self.rx.read(Vec::with_capacity(16 * 1024)).await;
            self.inbuf.extend_from_slice(&data);
            match result {
                StreamResult::Complete(_) => {}
                StreamResult::Dropped | StreamResult::Cancelled => self.eof = true,
            }
        }
    }
}
