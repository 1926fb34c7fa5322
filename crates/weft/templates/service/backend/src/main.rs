//! `{{name}}-backend`: the workload's service, a `wasi:cli/run` program that runs for the life
//! of the workload. It listens on the workload's virtual loopback, `127.0.0.1:7000` (reachable
//! by this workload's components only, never from outside), and answers each line a client
//! sends with `count=N LINE`: N counts the lines since the service started, state that
//! outlives the components' per-request instances.

use wasip2::sockets::instance_network::instance_network;
use wasip2::sockets::network::{ErrorCode, IpAddressFamily, IpSocketAddress, Ipv4SocketAddress};
use wasip2::sockets::tcp::TcpSocket;
use wasip2::sockets::tcp_create_socket::create_tcp_socket;

/// The port on the workload's loopback; `web` connects to it.
const PORT: u16 = 7000;

fn main() {
    // Returning (or exiting with an error) makes the host restart the service.
    if let Err(e) = serve() {
        eprintln!("{{name}}-backend: {e}");
        std::process::exit(1);
    }
}

fn serve() -> Result<(), String> {
    let net = instance_network();
    let sock = create_tcp_socket(IpAddressFamily::Ipv4).map_err(|e| e.name().to_string())?;
    let addr = IpSocketAddress::Ipv4(Ipv4SocketAddress {
        port: PORT,
        address: (127, 0, 0, 1),
    });
    sock.start_bind(&net, addr)
        .map_err(|e| format!("bind: {}", e.name()))?;
    wait(&sock, || sock.finish_bind()).map_err(|e| format!("bind: {}", e.name()))?;
    sock.start_listen()
        .map_err(|e| format!("listen: {}", e.name()))?;
    wait(&sock, || sock.finish_listen()).map_err(|e| format!("listen: {}", e.name()))?;
    println!("{{name}}-backend: listening on the workload's 127.0.0.1:{PORT}");

    let mut count: u64 = 0;
    loop {
        let (_client, input, output) = match sock.accept() {
            Ok(c) => c,
            Err(ErrorCode::WouldBlock) => {
                sock.subscribe().block();
                continue;
            }
            Err(e) => return Err(format!("accept: {}", e.name())),
        };
        let mut line = Vec::new();
        while !line.contains(&b'\n') && line.len() < 4096 {
            match input.blocking_read(256) {
                Ok(chunk) if !chunk.is_empty() => line.extend_from_slice(&chunk),
                _ => break,
            }
        }
        count += 1;
        let reply = format!("count={count} {}\n", String::from_utf8_lossy(&line).trim_end());
        let _ = output.blocking_write_and_flush(reply.as_bytes());
    }
}

/// Repeats a socket's `finish-*` call until it no longer would block.
fn wait(sock: &TcpSocket, mut f: impl FnMut() -> Result<(), ErrorCode>) -> Result<(), ErrorCode> {
    loop {
        match f() {
            Err(ErrorCode::WouldBlock) => sock.subscribe().block(),
            other => return other,
        }
    }
}
