//! `netpol-agent lab serve`: the servers inside a lab pod. TCP ports accept and close;
//! UDP ports echo each datagram back. Runs until killed.

use std::{
    net::{TcpListener, UdpSocket},
    time::Duration,
};

use anyhow::{Context, Result};

/// Listens on every `(protocol, port)` (dual-stack sockets) and serves forever.
///
/// # Errors
/// A port cannot be bound.
pub fn serve(ports: &[(String, u16)]) -> Result<()> {
    let mut handles = Vec::new();
    for (protocol, port) in ports {
        let port = *port;
        match protocol.as_str() {
            "TCP" => {
                let listener = TcpListener::bind(("::", port))
                    .with_context(|| format!("binding TCP {port}"))?;
                handles.push(std::thread::spawn(move || {
                    for stream in listener.incoming().flatten() {
                        drop(stream);
                    }
                }));
            }
            "UDP" => {
                let socket =
                    UdpSocket::bind(("::", port)).with_context(|| format!("binding UDP {port}"))?;
                handles.push(std::thread::spawn(move || {
                    let mut buf = vec![0u8; 65536];
                    loop {
                        if let Ok((n, from)) = socket.recv_from(&mut buf) {
                            let _ = socket.send_to(&buf[..n], from);
                        }
                    }
                }));
            }
            // SCTP has no sockets on this kernel; probes report it as unsupported.
            _ => {}
        }
    }
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}
