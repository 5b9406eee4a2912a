//! A deliberately tiny HTTP/1.1 server for `GET /metrics`: one request per connection,
//! bounded in size, time and concurrency so a slow or hostile client cannot hold it.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tracing::debug;

/// Content type of the OpenMetrics text format (what `prometheus-client` writes).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// A scraper's request head is a few hundred bytes; anything longer is refused.
pub const MAX_REQUEST_HEAD: usize = 8 * 1024;
/// Time a client has to send its request head.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Time a client has to take the response.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; further ones are closed at once.
pub const MAX_CONNECTIONS: usize = 16;

/// What a request head asks for.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    Metrics,
    NotFound,
    BadRequest,
    TooLarge,
    Timeout,
}

/// Reads the request head (up to the blank line) and routes it.
async fn read_request(s: &mut TcpStream) -> std::io::Result<Route> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return Ok(route(&buf[..end]));
        }
        if buf.len() >= MAX_REQUEST_HEAD {
            return Ok(Route::TooLarge);
        }
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Ok(Route::BadRequest);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn route(head: &[u8]) -> Route {
    let Ok(head) = std::str::from_utf8(head) else {
        return Route::BadRequest;
    };
    let line = head.lines().next().unwrap_or("");
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Route::BadRequest;
    };
    if !version.starts_with("HTTP/1.") {
        return Route::BadRequest;
    }
    let path = target.split('?').next().unwrap_or("");
    match (method, path) {
        ("GET", "/metrics") => Route::Metrics,
        _ => Route::NotFound,
    }
}

fn response(status: &str, content_type: &str, body: &str) -> Vec<u8> {
    let mut r = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body.as_bytes());
    r
}

async fn handle<F, Fut>(mut s: TcpStream, scrape: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Option<String>>,
{
    let route = match tokio::time::timeout(READ_TIMEOUT, read_request(&mut s)).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            debug!(error = %e, "metrics: reading the request failed");
            return;
        }
        Err(_) => Route::Timeout,
    };
    let text = "text/plain; charset=utf-8";
    let resp = match route {
        Route::Metrics => match scrape().await {
            Some(body) => response("200 OK", CONTENT_TYPE, &body),
            None => response("503 Service Unavailable", text, "daemon is shutting down\n"),
        },
        Route::NotFound => response("404 Not Found", text, "only GET /metrics is served\n"),
        Route::BadRequest => response("400 Bad Request", text, "bad request\n"),
        Route::Timeout => response("408 Request Timeout", text, "request timeout\n"),
        Route::TooLarge => response(
            "431 Request Header Fields Too Large",
            text,
            "request too large\n",
        ),
    };
    let _ = tokio::time::timeout(WRITE_TIMEOUT, async {
        s.write_all(&resp).await?;
        s.shutdown().await
    })
    .await;
}

/// Serves `/metrics` on `listener` until the runtime stops; `scrape` produces the body
/// (`None` when the daemon can no longer answer).
pub fn spawn<F, Fut>(listener: TcpListener, scrape: F)
where
    F: Fn() -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Option<String>> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    tokio::spawn(async move {
        loop {
            let (s, from) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    debug!(error = %e, "metrics: accept failed");
                    // EMFILE and the like: do not spin.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                debug!(%from, "metrics: too many connections, closing");
                continue;
            };
            let scrape = scrape.clone();
            tokio::spawn(async move {
                handle(s, scrape).await;
                drop(permit);
            });
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn server() -> std::net::SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        spawn(l, || async { Some("m 1\n# EOF\n".to_string()) });
        addr
    }

    async fn exchange(addr: std::net::SocketAddr, req: &[u8]) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        // A refused oversized request may close before all of it is written.
        let _ = s.write_all(req).await;
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out).await;
        String::from_utf8_lossy(&out).into_owned()
    }

    #[tokio::test]
    async fn serves_metrics_and_refuses_the_rest() {
        let addr = server().await;
        let r = exchange(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        assert!(
            r.contains(&format!("Content-Type: {CONTENT_TYPE}\r\n")),
            "{r}"
        );
        assert!(r.contains("Content-Length: 10\r\n"), "{r}");
        assert!(r.ends_with("\r\n\r\nm 1\n# EOF\n"), "{r}");
        let r = exchange(addr, b"GET /metrics?x=1 HTTP/1.0\r\n\r\n").await;
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        for req in [
            &b"GET / HTTP/1.1\r\n\r\n"[..],
            b"GET /metricsx HTTP/1.1\r\n\r\n",
            b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
        ] {
            let r = exchange(addr, req).await;
            assert!(r.starts_with("HTTP/1.1 404 Not Found\r\n"), "{r}");
        }
        let r = exchange(addr, b"garbage\r\n\r\n").await;
        assert!(r.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{r}");
    }

    #[tokio::test]
    async fn oversized_request_is_refused() {
        let addr = server().await;
        let mut req = b"GET /metrics HTTP/1.1\r\nX-Pad: ".to_vec();
        req.extend(std::iter::repeat_n(b'a', 2 * MAX_REQUEST_HEAD));
        req.extend_from_slice(b"\r\n\r\n");
        let r = exchange(addr, &req).await;
        assert!(
            r.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
            "{r}"
        );
    }

    #[tokio::test]
    async fn a_silent_client_is_dropped_and_others_are_served() {
        let addr = server().await;
        // Holds a connection without sending anything.
        let mut idle = TcpStream::connect(addr).await.unwrap();
        let r = exchange(addr, b"GET /metrics HTTP/1.1\r\n\r\n").await;
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        // Closed after READ_TIMEOUT, with a response saying why.
        let mut out = Vec::new();
        idle.read_to_end(&mut out).await.unwrap();
        let out = String::from_utf8_lossy(&out);
        assert!(out.starts_with("HTTP/1.1 408 Request Timeout\r\n"), "{out}");
    }
}
