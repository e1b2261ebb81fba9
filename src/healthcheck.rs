//! `sentiment-server healthcheck`: a dependency-free probe for container HEALTHCHECKs.

use crate::config::Config;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Ok when the local server answers `GET /health` with 200.
pub fn check(config: &Config, timeout: Duration) -> Result<(), String> {
    let address = probe_address(config)?;
    let mut stream = TcpStream::connect_timeout(&address, timeout)
        .map_err(|e| format!("cannot connect to {address}: {e}"))?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    stream
        .set_write_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .map_err(|e| format!("cannot send request: {e}"))?;
    let mut head = [0u8; 64];
    let n = stream
        .read(&mut head)
        .map_err(|e| format!("no answer: {e}"))?;
    let status_line = String::from_utf8_lossy(&head[..n]);
    let status = status_line.split_whitespace().nth(1).unwrap_or("none");
    if status == "200" {
        Ok(())
    } else {
        Err(format!("/health answered {status}"))
    }
}

/// The server's own address, or loopback when it listens on every interface.
fn probe_address(config: &Config) -> Result<SocketAddr, String> {
    let host = match config.host.parse::<IpAddr>() {
        Ok(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST).to_string(),
        _ => config.host.clone(),
    };
    (host.as_str(), config.port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host} has no address"))
}
