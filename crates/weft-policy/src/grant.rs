//! What a guest was denied, as a typed request for a grant: the runtime reports these
//! (`LogSink::denied`), and `weft_manifest::grant::suggest` turns one into the manifest lines
//! that would grant it. The type lives here, at the bottom layer, so the log sink and the
//! manifest crate can both name it.

use std::fmt;
use std::net::SocketAddr;

use crate::allow::Scheme;
use crate::sockets::{Protocol, SocketUse};

/// One use a guest tried and was denied.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum GrantRequest {
    /// An import no host interface grants (`namespace:package/interface[@version]`).
    Import { interface: String },
    /// A TCP connect, or a UDP send or receive, to `addr`.
    SocketConnect {
        addr: SocketAddr,
        protocol: Protocol,
    },
    /// A bind (or listen) of `addr`.
    SocketBind {
        addr: SocketAddr,
        protocol: Protocol,
    },
    /// A name lookup (`wasi:sockets/ip-name-lookup`) of `name`, as the guest wrote it.
    NameLookup { name: String },
    /// An outgoing HTTP request to `scheme://host:port` (`host` without brackets, as the guest
    /// wrote it; `port` the URI's, or the scheme's default).
    OutgoingHttp {
        scheme: Scheme,
        host: String,
        port: u16,
    },
}

/// Longest name or host kept in a request: a guest cannot make the host store more.
const MAX_NAME: usize = 256;

fn cut(s: &str) -> String {
    s.chars().take(MAX_NAME).collect()
}

impl GrantRequest {
    /// The request a refused socket operation asks for.
    pub fn socket(socket_use: SocketUse, addr: SocketAddr) -> Self {
        let protocol = socket_use.protocol();
        match socket_use {
            SocketUse::TcpBind | SocketUse::UdpBind | SocketUse::TcpListen => {
                GrantRequest::SocketBind { addr, protocol }
            }
            SocketUse::TcpAccept
            | SocketUse::TcpConnect
            | SocketUse::UdpSend
            | SocketUse::UdpReceive => GrantRequest::SocketConnect { addr, protocol },
        }
    }

    /// An import (cut to 256 characters).
    pub fn import(interface: &str) -> Self {
        GrantRequest::Import {
            interface: cut(interface),
        }
    }

    /// A name lookup (the name cut to 256 characters).
    pub fn lookup(name: &str) -> Self {
        GrantRequest::NameLookup { name: cut(name) }
    }

    /// An outgoing HTTP request (the host cut to 256 characters, brackets of an IPv6 address
    /// removed).
    pub fn outgoing_http(scheme: Scheme, host: &str, port: u16) -> Self {
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        GrantRequest::OutgoingHttp {
            scheme,
            host: cut(host),
            port,
        }
    }

    /// For [`GrantRequest::OutgoingHttp`]: `host:port`, the IPv6 host in brackets.
    pub fn authority(host: &str, port: u16) -> String {
        if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        }
    }
}

impl fmt::Display for GrantRequest {
    /// What was denied, e.g. `a TCP connect to 127.0.0.1:5432`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let proto = |p: Protocol| match p {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
        };
        match self {
            GrantRequest::Import { interface } => write!(f, "the import `{interface}`"),
            GrantRequest::SocketConnect {
                addr,
                protocol: Protocol::Tcp,
            } => write!(f, "a TCP connect to {addr}"),
            GrantRequest::SocketConnect {
                addr,
                protocol: Protocol::Udp,
            } => write!(f, "a UDP send to {addr}"),
            GrantRequest::SocketBind { addr, protocol } => {
                write!(f, "a {} bind of {addr}", proto(*protocol))
            }
            GrantRequest::NameLookup { name } => write!(f, "a name lookup of `{name}`"),
            GrantRequest::OutgoingHttp { scheme, host, port } => {
                write!(
                    f,
                    "an outgoing HTTP request to {}://{}",
                    scheme.as_str(),
                    GrantRequest::authority(host, *port)
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_read_as_what_was_denied() {
        let addr: SocketAddr = "10.0.0.5:5432".parse().expect("addr");
        assert_eq!(
            GrantRequest::socket(SocketUse::TcpConnect, addr).to_string(),
            "a TCP connect to 10.0.0.5:5432"
        );
        assert_eq!(
            GrantRequest::socket(SocketUse::UdpSend, addr).to_string(),
            "a UDP send to 10.0.0.5:5432"
        );
        assert_eq!(
            GrantRequest::socket(SocketUse::TcpListen, addr).to_string(),
            "a TCP bind of 10.0.0.5:5432"
        );
        assert_eq!(
            GrantRequest::outgoing_http(Scheme::Http, "[::1]", 8080).to_string(),
            "an outgoing HTTP request to http://[::1]:8080"
        );
        assert_eq!(
            GrantRequest::lookup(&"a".repeat(1000)),
            GrantRequest::NameLookup {
                name: "a".repeat(MAX_NAME)
            }
        );
    }
}
