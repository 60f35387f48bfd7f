//! Cross-cutting request handling: body limit, default headers, access log.

use poem::http::{HeaderValue, Method, header};
use poem::{Body, Endpoint, IntoResponse, Request, Response};

use super::error::ErrorBody;
use crate::metrics::{Metrics, RouteLabels};

/// Past the limit, at most this much more is read (and discarded) so the
/// client can receive the 413 instead of a reset connection; beyond it the
/// connection is simply closed.
const DRAIN_CAP: u64 = 16 * 1024 * 1024;

/// Refuse bodies over `limit` bytes with 413, whether or not the client
/// declared a `Content-Length`: a chunked body is read up to the limit and no
/// further, so memory stays bounded.
pub async fn limit_body<E: Endpoint>(next: E, mut req: Request, limit: usize) -> poem::Result<Response> {
    use tokio::io::AsyncReadExt;
    let too_large = || {
        let mut resp = poem_openapi::payload::Json(Box::new(ErrorBody::new(
            "payload_too_large",
            format!("the request body exceeds {limit} bytes"),
        )))
        .into_response();
        resp.set_status(poem::http::StatusCode::PAYLOAD_TOO_LARGE);
        resp
    };
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return next.call(req).await.map(IntoResponse::into_response);
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut reader = req.take_body().into_async_read();
    let mut buffer = Vec::new();
    let within = declared.is_none_or(|len| len <= limit as u64);
    if within {
        let read = (&mut reader).take(limit as u64 + 1).read_to_end(&mut buffer).await;
        if let Err(e) = read {
            return Err(poem::Error::new(e, poem::http::StatusCode::BAD_REQUEST));
        }
    }
    if !within || buffer.len() > limit {
        let _ = tokio::io::copy(&mut reader.take(DRAIN_CAP), &mut tokio::io::sink()).await;
        return Ok(too_large());
    }
    req.set_body(Body::from_vec(buffer));
    next.call(req).await.map(IntoResponse::into_response)
}

/// Defaults for an identity provider: responses are not cached unless an
/// endpoint says so (RFC 6749 §5.1 requires `no-store` on token responses),
/// browsers must not sniff content types or frame pages, and no `Referer`
/// leaves for anywhere unless an endpoint says so. The HTML pages say
/// `same-origin`: under `no-referrer` a browser posts their forms with
/// `Origin: null` (see `http::authorize::csrf`). With an https issuer every
/// response also carries `hsts` (see [`hsts`]).
pub async fn default_headers<E: Endpoint>(
    next: E,
    req: Request,
    hsts: Option<&HeaderValue>,
) -> poem::Result<Response> {
    let mut resp = next.call(req).await?.into_response();
    let headers = resp.headers_mut();
    if let Some(hsts) = hsts {
        headers.insert(header::STRICT_TRANSPORT_SECURITY, hsts.clone());
    }
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    }
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !headers.contains_key(header::REFERRER_POLICY) {
        headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    }
    Ok(resp)
}

/// The `Strict-Transport-Security` value for a server known as `issuer`:
/// `max-age=<seconds>` when the issuer is https (served directly or through a
/// proxy that terminates TLS), none when it is http, where browsers would
/// ignore it and a development setup must stay reachable over plain HTTP.
/// No `includeSubDomains`: latchkey does not know what else runs under its
/// host name, and a path-mounted issuer (`https://example.com/auth`) would
/// force it on the whole site.
pub fn hsts(issuer: &str, max_age: std::time::Duration) -> Option<HeaderValue> {
    let https = issuer.get(..8).is_some_and(|scheme| scheme.eq_ignore_ascii_case("https://"));
    if !https {
        return None;
    }
    HeaderValue::try_from(format!("max-age={}", max_age.as_secs())).ok()
}

/// One log line per request: method, path (never the query, which may hold
/// codes), status, latency. The request's thread only hands these fields to
/// the access log's own thread ([`access_lines`]), which formats and writes
/// the line: formatting every line on the request's thread cost a quarter
/// to a third of JWKS throughput (BENCHMARKS.md).
pub async fn access_log<E: Endpoint>(
    next: E,
    req: Request,
    metrics: &Metrics,
    labels: &RouteLabels,
) -> poem::Result<Response> {
    let method = req.method().clone();
    let started = std::time::Instant::now();
    let logged = tracing::enabled!(tracing::Level::INFO);
    // A 5xx is logged at `warn` even when `info` lines are filtered out.
    let path = tracing::enabled!(tracing::Level::WARN).then(|| req.uri().path().to_owned());
    let (route, label_method) = (labels.route(req.uri().path()), RouteLabels::method(method.as_str()));
    let resp = next.call(req).await?.into_response();
    let status_code = resp.status();
    let elapsed = started.elapsed();
    metrics.http_requests.with_label_values(&[label_method, route, status_code.as_str()]).inc();
    metrics.http_duration.with_label_values(&[label_method, route]).observe(elapsed.as_secs_f64());
    let status = status_code.as_u16();
    if logged || status >= 500 {
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let path = path.unwrap_or_default();
        let line = AccessLine { method, path, status, micros };
        match access_lines() {
            Some(lines) => {
                if let Err(std::sync::mpsc::SendError(AccessMessage::Line(line))) =
                    lines.send(AccessMessage::Line(line))
                {
                    line.emit();
                }
            }
            None => line.emit(),
        }
    }
    Ok(resp)
}

struct AccessLine {
    method: Method,
    path: String,
    status: u16,
    micros: u64,
}

impl AccessLine {
    fn emit(&self) {
        let AccessLine { method, path, status, micros } = self;
        if *status >= 500 {
            tracing::warn!(%method, %path, status, micros, "request");
        } else {
            tracing::info!(%method, %path, status, micros, "request");
        }
    }
}

enum AccessMessage {
    Line(AccessLine),
    /// Answer once every line sent before is written.
    Flush(std::sync::mpsc::SyncSender<()>),
}

/// Lines the access log's thread has yet to write, at most this many; a
/// request waits when they are all taken, as it does when the log writer
/// falls behind (nothing is dropped).
const ACCESS_BACKLOG: usize = 65_536;

/// The access log's thread, started on first use; `None` if it could not be.
fn access_lines() -> Option<&'static std::sync::mpsc::SyncSender<AccessMessage>> {
    static LINES: std::sync::OnceLock<Option<std::sync::mpsc::SyncSender<AccessMessage>>> =
        std::sync::OnceLock::new();
    LINES
        .get_or_init(|| {
            let (lines, received) = std::sync::mpsc::sync_channel(ACCESS_BACKLOG);
            let thread = std::thread::Builder::new().name("latchkey-access".into()).spawn(move || {
                for message in received {
                    match message {
                        AccessMessage::Line(line) => line.emit(),
                        AccessMessage::Flush(done) => {
                            let _ = done.send(());
                        }
                    }
                }
            });
            thread.ok().map(|_| lines)
        })
        .as_ref()
}

/// Wait (up to 5 s) until every access line sent so far is written: at
/// shutdown, before the log writer is flushed.
pub fn flush_access_log() {
    let Some(lines) = access_lines() else { return };
    let (done, written) = std::sync::mpsc::sync_channel(1);
    if lines.send(AccessMessage::Flush(done)).is_ok() {
        let _ = written.recv_timeout(std::time::Duration::from_secs(5));
    }
}
