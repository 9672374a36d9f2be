//! A CloudWatch Logs HTTP/1.1 proxy owned by the tests: forwards to an upstream (moto) or
//! answers by itself, injects faults on PutLogEvents calls, checks every batch against the
//! API limits independently of the shipper's code, and records which requests reached
//! the endpoint and whether the client got the answer.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::net::{TcpListener, TcpStream};

/// One injected fault, applied to one PutLogEvents request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Answer 400 ThrottlingException without forwarding.
    Throttle,
    /// Answer this status (500, 503) without forwarding.
    Status(u16),
    /// Forward, then hold the answer this long before sending it.
    Slow(Duration),
    /// Close the connection without forwarding.
    ResetBefore,
    /// Forward, then close the connection instead of answering.
    ResetAfter,
    /// Forward, hold the answer this long (past the client's timeout), then close.
    Hang(Duration),
    /// Answer 400 InvalidParameterException without forwarding.
    Invalid,
    /// Answer 200 reporting the first event too old and the last too new, without forwarding.
    RejectEnds,
}

/// How the proxy behaves.
#[derive(Debug, Clone, Copy)]
pub struct ProxyOptions {
    /// Forward to this endpoint; `None`: answer every call with success by itself.
    pub upstream: Option<SocketAddr>,
    /// Keep each request's events in its record (off for benchmarks).
    pub record_events: bool,
}

/// What the proxy saw of one PutLogEvents request.
#[derive(Debug, Clone)]
pub struct PutRecord {
    /// Arrival order, from 0.
    pub index: usize,
    /// The fault applied, if any.
    pub fault: Option<Fault>,
    /// The request reached the endpoint (was forwarded, or answered by the proxy as the endpoint).
    pub reached_endpoint: bool,
    /// The endpoint accepted it (HTTP 200).
    pub accepted: bool,
    /// The client got the endpoint's answer.
    pub answered: bool,
    /// Number of events.
    pub event_count: usize,
    /// Bytes counted as the API counts them.
    pub api_bytes: usize,
    /// The events `(timestamp, message)` when recording is on.
    pub events: Vec<(i64, String)>,
    /// When it arrived.
    pub at: Instant,
    /// When the proxy finished with it (answered or closed).
    pub done_at: Option<Instant>,
}

#[derive(Default)]
struct State {
    script: VecDeque<Fault>,
    outage: Option<(Instant, Fault)>,
    records: Vec<PutRecord>,
    violations: Vec<String>,
    other_calls: Vec<String>,
}

struct Shared {
    options: ProxyOptions,
    state: Mutex<State>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A running proxy on 127.0.0.1; stops when dropped.
pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Proxy {
    /// Binds a free port on 127.0.0.1 and serves on the current runtime.
    ///
    /// # Errors
    /// When the port cannot be bound.
    pub async fn start(options: ProxyOptions) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        Self::serve(listener, options)
    }

    /// Serves on a bound listener (for a fixed port).
    ///
    /// # Errors
    /// When the listener has no local address.
    pub fn serve(listener: TcpListener, options: ProxyOptions) -> std::io::Result<Self> {
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            options,
            state: Mutex::new(State::default()),
        });
        let s = shared.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let s = s.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| handle(s.clone(), req));
                    // A connection error is the client's or an injected reset: nothing to do.
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Ok(Self { addr, shared, task })
    }

    /// The endpoint URL to give the client.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Applies these faults, in order, to the next PutLogEvents requests.
    pub fn push_faults(&self, faults: impl IntoIterator<Item = Fault>) {
        self.shared.lock().script.extend(faults);
    }

    /// Forgets the faults not applied yet.
    pub fn clear_faults(&self) {
        self.shared.lock().script.clear();
    }

    /// Faults not applied yet.
    pub fn pending_faults(&self) -> usize {
        self.shared.lock().script.len()
    }

    /// Every request (any operation) fails with `fault` for `duration` from now.
    pub fn outage(&self, duration: Duration, fault: Fault) {
        self.shared.lock().outage = Some((Instant::now() + duration, fault));
    }

    /// The PutLogEvents requests seen so far, in arrival order.
    pub fn records(&self) -> Vec<PutRecord> {
        self.shared.lock().records.clone()
    }

    /// Batches that broke an API limit, described.
    pub fn violations(&self) -> Vec<String> {
        self.shared.lock().violations.clone()
    }

    /// Other operations seen, in order (`CreateLogGroup`, `CreateLogStream`, ...).
    pub fn other_calls(&self) -> Vec<String> {
        self.shared.lock().other_calls.clone()
    }
}

#[derive(Deserialize)]
struct PutBody {
    #[serde(rename = "logEvents", default)]
    log_events: Vec<PutEvent>,
}

#[derive(Deserialize)]
struct PutEvent {
    timestamp: i64,
    message: String,
}

/// The limits, written out independently of the crate's constants on purpose.
fn check_limits(events: &[PutEvent]) -> (usize, Vec<String>) {
    let mut problems = Vec::new();
    let bytes: usize = events.iter().map(|e| e.message.len() + 26).sum();
    if events.is_empty() {
        problems.push("empty batch".to_owned());
    }
    if events.len() > 10_000 {
        problems.push(format!("{} events > 10,000", events.len()));
    }
    if bytes > 1_048_576 {
        problems.push(format!("{bytes} bytes > 1,048,576"));
    }
    if let Some(w) = events
        .windows(2)
        .position(|w| w[1].timestamp < w[0].timestamp)
    {
        problems.push(format!("event {} is older than the one before it", w + 1));
    }
    if let (Some(min), Some(max)) = (
        events.iter().map(|e| e.timestamp).min(),
        events.iter().map(|e| e.timestamp).max(),
    ) && max - min > 86_400_000
    {
        problems.push(format!("span {} ms > 24 h", max - min));
    }
    if let Some(e) = events.iter().find(|e| e.message.len() + 26 > 262_144) {
        problems.push(format!(
            "an event of {} bytes > 256 KiB",
            e.message.len() + 26
        ));
    }
    (bytes, problems)
}

fn json_response(status: u16, body: &'static str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static("application/x-amz-json-1.1"),
    );
    resp
}

fn fault_response(fault: Fault) -> Response<Full<Bytes>> {
    match fault {
        Fault::Throttle => json_response(
            400,
            r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#,
        ),
        Fault::Invalid => json_response(
            400,
            r#"{"__type":"InvalidParameterException","message":"injected"}"#,
        ),
        Fault::Status(503) => json_response(
            503,
            r#"{"__type":"ServiceUnavailableException","message":"injected"}"#,
        ),
        Fault::Status(code) => {
            json_response(code, r#"{"__type":"InternalFailure","message":"injected"}"#)
        }
        _ => json_response(500, "{}"),
    }
}

/// An error makes hyper close the connection without an answer: the injected reset.
#[derive(Debug)]
struct Reset;
impl std::fmt::Display for Reset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("injected connection reset")
    }
}
impl std::error::Error for Reset {}

async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Reset> {
    let target = req
        .headers()
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .rsplit('.')
        .next()
        .unwrap_or("")
        .to_owned();
    let (parts, body) = req.into_parts();
    let Ok(body) = body.collect().await.map(|b| b.to_bytes()) else {
        return Err(Reset);
    };
    let now = Instant::now();
    let outage = {
        let mut st = shared.lock();
        match st.outage {
            Some((until, fault)) if until > now => Some(fault),
            Some(_) => {
                st.outage = None;
                None
            }
            None => None,
        }
    };
    if target != "PutLogEvents" {
        shared.lock().other_calls.push(target.clone());
        if let Some(fault) = outage {
            return apply_unforwarded(fault).await;
        }
        return forward_or_answer(&shared, parts, body)
            .await
            .map(|(r, _)| r);
    }

    let parsed: Result<PutBody, _> = serde_json::from_slice(&body);
    let (event_count, api_bytes, events, problems) = match &parsed {
        Ok(p) => {
            let (bytes, problems) = check_limits(&p.log_events);
            let events = if shared.options.record_events {
                p.log_events
                    .iter()
                    .map(|e| (e.timestamp, e.message.clone()))
                    .collect()
            } else {
                Vec::new()
            };
            (p.log_events.len(), bytes, events, problems)
        }
        Err(e) => (0, 0, Vec::new(), vec![format!("unparseable body: {e}")]),
    };
    let index = {
        let mut st = shared.lock();
        let fault = outage.or_else(|| st.script.pop_front());
        let index = st.records.len();
        for p in problems {
            st.violations.push(format!("request {index}: {p}"));
        }
        st.records.push(PutRecord {
            index,
            fault,
            reached_endpoint: false,
            accepted: false,
            answered: false,
            event_count,
            api_bytes,
            events,
            at: now,
            done_at: None,
        });
        index
    };
    let fault = shared.lock().records[index].fault;
    let mark = |reached: bool, accepted: bool, answered: bool| {
        let mut st = shared.lock();
        let r = &mut st.records[index];
        r.reached_endpoint = reached;
        r.accepted = accepted;
        r.answered = answered;
        r.done_at = Some(Instant::now());
    };
    match fault {
        None => {
            let (resp, accepted) = forward_detached(&shared, index, parts, body).await?;
            mark(true, accepted, true);
            Ok(resp)
        }
        Some(Fault::RejectEnds) => {
            mark(true, true, true);
            let body = format!(
                r#"{{"rejectedLogEventsInfo":{{"tooOldLogEventEndIndex":1,"tooNewLogEventStartIndex":{}}}}}"#,
                event_count.saturating_sub(1)
            );
            let mut resp = json_response(200, "");
            *resp.body_mut() = Full::new(Bytes::from(body));
            Ok(resp)
        }
        Some(Fault::ResetBefore) => {
            mark(false, false, false);
            Err(Reset)
        }
        Some(f @ (Fault::Throttle | Fault::Status(_) | Fault::Invalid)) => {
            mark(false, false, true);
            apply_unforwarded(f).await
        }
        Some(Fault::Slow(d)) => {
            let (resp, accepted) = forward_detached(&shared, index, parts, body).await?;
            // Dropped here if the client gives up first: then it stays unanswered.
            tokio::time::sleep(d).await;
            mark(true, accepted, true);
            Ok(resp)
        }
        Some(Fault::ResetAfter) => {
            forward_detached(&shared, index, parts, body).await?;
            Err(Reset)
        }
        Some(Fault::Hang(d)) => {
            forward_detached(&shared, index, parts, body).await?;
            tokio::time::sleep(d).await;
            Err(Reset)
        }
    }
}

/// Forwards in a task of its own, which records the endpoint's verdict (reached,
/// accepted, not answered yet) even when the client goes away meanwhile and hyper drops
/// the request's future.
async fn forward_detached(
    shared: &Arc<Shared>,
    index: usize,
    parts: hyper::http::request::Parts,
    body: Bytes,
) -> Result<(Response<Full<Bytes>>, bool), Reset> {
    let s = shared.clone();
    let task = tokio::spawn(async move {
        let out = forward_or_answer(&s, parts, body).await;
        if let Ok((_, accepted)) = &out {
            let mut st = s.lock();
            let r = &mut st.records[index];
            r.reached_endpoint = true;
            r.accepted = *accepted;
            r.done_at = Some(Instant::now());
        }
        out
    });
    task.await.map_err(|_| Reset)?
}

async fn apply_unforwarded(fault: Fault) -> Result<Response<Full<Bytes>>, Reset> {
    match fault {
        Fault::ResetBefore | Fault::ResetAfter => Err(Reset),
        Fault::Hang(d) | Fault::Slow(d) => {
            tokio::time::sleep(d).await;
            Err(Reset)
        }
        f => Ok(fault_response(f)),
    }
}

/// Forwards to the upstream (or answers success); returns the answer and whether it was 200.
async fn forward_or_answer(
    shared: &Shared,
    parts: hyper::http::request::Parts,
    body: Bytes,
) -> Result<(Response<Full<Bytes>>, bool), Reset> {
    let Some(upstream) = shared.options.upstream else {
        return Ok((json_response(200, "{}"), true));
    };
    let stream = TcpStream::connect(upstream).await.map_err(|_| Reset)?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(stream))
            .await
            .map_err(|_| Reset)?;
    tokio::spawn(conn);
    let mut req = Request::new(Full::new(body));
    *req.method_mut() = parts.method;
    *req.uri_mut() = parts.uri.path_and_query().map_or_else(
        || "/".parse().unwrap_or_default(),
        |p| p.as_str().parse().unwrap_or_default(),
    );
    *req.headers_mut() = parts.headers;
    let resp = sender.send_request(req).await.map_err(|_| Reset)?;
    let (rparts, rbody) = resp.into_parts();
    let bytes = rbody.collect().await.map_err(|_| Reset)?.to_bytes();
    let accepted = rparts.status == StatusCode::OK;
    let mut out = Response::new(Full::new(bytes));
    *out.status_mut() = rparts.status;
    for (k, v) in &rparts.headers {
        if k != hyper::header::TRANSFER_ENCODING && k != hyper::header::CONNECTION {
            out.headers_mut().append(k, v.clone());
        }
    }
    Ok((out, accepted))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(ts: i64, len: usize) -> PutEvent {
        PutEvent {
            timestamp: ts,
            message: "m".repeat(len),
        }
    }

    #[test]
    fn proxy_limit_check_flags_each_broken_limit() {
        assert!(check_limits(&[ev(0, 1), ev(1, 1)]).1.is_empty());
        let many: Vec<_> = (0..10_001).map(|i| ev(i, 1)).collect();
        assert_eq!(check_limits(&many).1.len(), 1);
        assert!(check_limits(&many[..10_000]).1.is_empty());
        let big: Vec<_> = (0..4).map(|_| ev(0, 262_144 - 26)).collect();
        assert!(
            check_limits(&big).1.is_empty(),
            "exactly 1,048,576 bytes is allowed"
        );
        let mut too_big = big;
        too_big.push(ev(0, 0));
        assert_eq!(check_limits(&too_big).1.len(), 1);
        assert_eq!(check_limits(&[ev(5, 1), ev(4, 1)]).1.len(), 1);
        assert!(check_limits(&[ev(0, 1), ev(86_400_000, 1)]).1.is_empty());
        assert_eq!(check_limits(&[ev(0, 1), ev(86_400_001, 1)]).1.len(), 1);
    }
}
