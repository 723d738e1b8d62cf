//! The plain HTTP/1.1 endpoint both binaries serve `/metrics` and `/healthz` on (the
//! coordinator with `serve --metrics`, an agent with `run --metrics`): one request per
//! connection, a bounded head read within a deadline, a bounded number of connections at
//! once. Only the answers differ, so each binary passes a function from path to
//! [`Response`]; the listener, the parsing and the refusals live here once.

#![forbid(unsafe_code)]

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tracing::{debug, warn};

/// Content type of plain-text answers.
pub const TEXT: &str = "text/plain; charset=utf-8";
/// Content type of the Prometheus/OpenMetrics exposition.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A request's head must arrive within this and fit in [`MAX_REQUEST`] bytes.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_REQUEST: usize = 8 * 1024;

/// One answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// 200, 503, ...
    pub status: u16,
    /// [`TEXT`] or [`OPENMETRICS`].
    pub content_type: &'static str,
    /// The body.
    pub body: String,
}

impl Response {
    /// A plain-text answer.
    pub fn text(status: u16, body: impl Into<String>) -> Self {
        Response {
            status,
            content_type: TEXT,
            body: body.into(),
        }
    }
}

/// Serves until the task is dropped, at most `max_connections` at once (more wait).
/// `answer` gets the path without its query and returns `None` for an unknown path.
pub async fn serve<F>(listener: TcpListener, max_connections: usize, answer: F)
where
    F: Fn(&str) -> Option<Response> + Send + Sync + 'static,
{
    let answer = Arc::new(answer);
    let permits = Arc::new(Semaphore::new(max_connections));
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                warn!(error = %e, "metrics endpoint: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let answer = answer.clone();
        tokio::spawn(async move {
            if let Err(e) = reply(stream, answer.as_ref()).await {
                debug!(%peer, error = %e, "metrics endpoint: request not answered");
            }
            drop(permit);
        });
    }
}

/// The response to one request line (method and path as sent).
pub fn respond(method: &str, path: &str, answer: &dyn Fn(&str) -> Option<Response>) -> Response {
    if method != "GET" && method != "HEAD" {
        return Response::text(405, "only GET\n");
    }
    let path = path.split('?').next().unwrap_or("");
    answer(path).unwrap_or_else(|| Response::text(404, "not found: try /metrics or /healthz\n"))
}

async fn reply(
    mut stream: TcpStream,
    answer: &(dyn Fn(&str) -> Option<Response> + Send + Sync),
) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let head = tokio::time::timeout(REQUEST_TIMEOUT, async {
        let mut chunk = [0u8; 1024];
        while !(buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.windows(2).any(|w| w == b"\n\n")) {
            if buf.len() > MAX_REQUEST {
                return Err(std::io::Error::other("request head too large"));
            }
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(std::io::Error::other(
                    "connection closed before the request",
                ));
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        Ok(())
    })
    .await;
    let response = match head {
        Ok(Ok(())) => {
            let text = String::from_utf8_lossy(&buf);
            let mut parts = text.lines().next().unwrap_or("").split_whitespace();
            let method = parts.next().unwrap_or("");
            let path = parts.next().unwrap_or("");
            let mut r = respond(method, path, answer);
            if method == "HEAD" {
                r.body.clear();
            }
            r
        }
        Ok(Err(e)) => return Err(e),
        Err(_) => Response::text(408, "request timed out\n"),
    };
    let reason = match response.status {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        _ => "Service Unavailable",
    };
    let head = format!(
        "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        response.status,
        response.content_type,
        response.body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(response.body.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known(path: &str) -> Option<Response> {
        (path == "/healthz").then(|| Response::text(200, "ok\n"))
    }

    #[test]
    fn methods_paths_and_queries() {
        assert_eq!(respond("GET", "/healthz?x=1", &known).status, 200);
        assert_eq!(respond("HEAD", "/healthz", &known).status, 200);
        assert_eq!(respond("POST", "/healthz", &known).status, 405);
        assert_eq!(respond("GET", "/other", &known).status, 404);
    }

    #[tokio::test]
    async fn answers_over_tcp_and_refuses_an_oversized_head() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(serve(listener, 2, known));
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("write");
        let mut out = String::new();
        s.read_to_string(&mut out).await.expect("read");
        assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
        assert!(out.ends_with("\r\n\r\nok\n"), "{out}");

        let mut s = TcpStream::connect(addr).await.expect("connect");
        let _ = s.write_all(&vec![b'a'; MAX_REQUEST + 2048]).await;
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out).await;
        assert!(out.is_empty(), "an oversized head gets no answer");
        server.abort();
    }
}
