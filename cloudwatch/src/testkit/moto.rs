//! Starts a moto server (local CloudWatch Logs endpoint) on a free 127.0.0.1 port and
//! kills it on drop; reads a stream back with the real SDK.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_config::BehaviorVersion;
use aws_sdk_cloudwatchlogs::Client;
use aws_sdk_cloudwatchlogs::config::{Credentials, Region};

use super::TestkitError;

/// A running moto server, killed when dropped.
#[derive(Debug)]
pub struct Moto {
    child: Child,
    addr: SocketAddr,
}

impl Moto {
    /// Starts `$NETPOL_MOTO_SERVER -H 127.0.0.1 -p <free port>` and waits until it listens.
    ///
    /// # Errors
    /// When the variable is unset, the process cannot start or does not listen in 60 s.
    pub fn start() -> Result<Self, TestkitError> {
        let bin = std::env::var_os("NETPOL_MOTO_SERVER").ok_or(TestkitError::MotoNotConfigured)?;
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|source| TestkitError::Io {
                what: "pick a free port",
                source,
            })?
            .port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let child = Command::new(bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|source| TestkitError::Io {
                what: "spawn moto_server",
                source,
            })?;
        let moto = Self { child, addr };
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if Instant::now() > deadline {
                return Err(TestkitError::MotoNotReady { addr, secs: 60 });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(moto)
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its endpoint URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        // Errors here mean it is already gone; nothing else to do in a destructor.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Dummy credentials for the local endpoints.
pub fn test_credentials() -> Credentials {
    Credentials::new("testing", "testing", None, None, "cloudwatch-testkit")
}

/// An SDK client for a local endpoint (region us-east-1, dummy credentials).
pub async fn sdk_client(endpoint: &str) -> Client {
    let conf = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(test_credentials())
        .load()
        .await;
    Client::new(&conf)
}

/// Every event of a stream, oldest first: `(timestamp ms, message)`.
///
/// # Errors
/// [`TestkitError::ReadBack`] when a GetLogEvents call fails.
pub async fn read_stream(
    client: &Client,
    group: &str,
    stream: &str,
) -> Result<Vec<(i64, String)>, TestkitError> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    for _ in 0..100_000 {
        let resp = client
            .get_log_events()
            .log_group_name(group)
            .log_stream_name(stream)
            .start_from_head(true)
            .limit(10_000)
            .set_next_token(token.clone())
            .send()
            .await
            .map_err(|e| TestkitError::ReadBack {
                detail: aws_sdk_cloudwatchlogs::error::DisplayErrorContext(e).to_string(),
            })?;
        let events = resp.events();
        for e in events {
            out.push((
                e.timestamp().unwrap_or_default(),
                e.message().unwrap_or_default().to_owned(),
            ));
        }
        let next = resp.next_forward_token().map(str::to_owned);
        if events.is_empty() || next.is_none() || next == token {
            break;
        }
        token = next;
    }
    Ok(out)
}
