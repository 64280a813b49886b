//! The parity harness's differential test (issue "One data plane"): a corpus of requests
//! (methods, targets, encodings, fields, bodies, malformed input) against backend responses
//! of every framing (length, chunked, close-delimited, 1xx, 204, 304, HEAD answers, both
//! lengths, repeated lengths, a broken chunk size) goes through a proxy with the fast lane on and one with it
//! off. What the client sees and what the backend receives must be equal after the one
//! documented normalisation: field-name case (and `Date`, which is the clock's).

use crate::common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use common::raw::Conn;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const HOST: &str = "p.example.com";

/// The backend's answer for a target `/r/<kind>...` (head only for a HEAD request), and
/// whether it closes the connection after it.
fn reply(kind: &str, head_request: bool) -> (Vec<u8>, bool) {
    let (head, body, close): (&str, &str, bool) = match kind {
        "cl" => ("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-App: a\r\n\r\n", "hello", false),
        "chunked" => (
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            "5\r\nhello\r\n0\r\n\r\n",
            false,
        ),
        "close" => ("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", "hello", true),
        "nolength" => ("HTTP/1.1 200 OK\r\nX-B: 1\r\n\r\n", "until close", true),
        "204" => ("HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n", "", false),
        "304" => ("HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\n\r\n", "", false),
        "empty" => ("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", "", false),
        "103" => (
            "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n",
            "ok",
            false,
        ),
        "twolengths" => (
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n",
            "ok",
            false,
        ),
        "clte" => (
            "HTTP/1.1 200 OK\r\nContent-Length: 9\r\nTransfer-Encoding: chunked\r\n\r\n",
            "2\r\nok\r\n0\r\n\r\n",
            true,
        ),
        "404" => ("HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\n", "nah", false),
        "badchunk" => (
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            "+5\r\nhello\r\n0\r\n\r\n",
            true,
        ),
        "cookies" => (
            "HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nContent-Length: 1\r\n\r\n",
            "c",
            false,
        ),
        _ => ("HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\n", "oops", false),
    };
    let mut bytes = head.as_bytes().to_vec();
    if !head_request {
        bytes.extend_from_slice(body.as_bytes());
    }
    (bytes, close)
}

const KINDS: [&str; 13] = [
    "cl",
    "chunked",
    "close",
    "nolength",
    "204",
    "304",
    "empty",
    "103",
    "twolengths",
    "clte",
    "404",
    "cookies",
    "500",
];

/// What a backend received, by the request's `x-case` field: the request line, the fields
/// (names lowercased, sorted) and the body (de-chunked).
type Received = Arc<Mutex<HashMap<String, String>>>;

/// A backend that records every request and answers by its target's kind.
async fn recording_backend() -> (std::net::SocketAddr, Received) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Received = Arc::default();
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(serve(s, record.clone()));
        }
    });
    (addr, seen)
}

async fn serve(mut s: TcpStream, seen: Received) {
    let mut buf = Vec::new();
    loop {
        let Some(end) = fill_until(&mut s, &mut buf, |b| find(b, b"\r\n\r\n")).await else {
            return;
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        buf.drain(..end + 4);
        let mut lines = head.split("\r\n");
        let line = lines.next().unwrap_or_default().to_string();
        let mut fields: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let get = |name: &str| {
            fields
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        };
        let mut body = Vec::new();
        if let Some(len) = get("content-length").and_then(|v| v.parse::<usize>().ok()) {
            if fill_until(&mut s, &mut buf, |b| (b.len() >= len).then_some(len))
                .await
                .is_none()
            {
                return;
            }
            body = buf.drain(..len).collect();
        } else if get("transfer-encoding").is_some() {
            loop {
                let Some(at) = fill_until(&mut s, &mut buf, |b| find(b, b"\r\n")).await else {
                    return;
                };
                let size_text = String::from_utf8_lossy(&buf[..at]).into_owned();
                let size = usize::from_str_radix(size_text.trim(), 16).unwrap_or(0);
                buf.drain(..at + 2);
                let want = size + 2;
                if fill_until(&mut s, &mut buf, |b| (b.len() >= want).then_some(want))
                    .await
                    .is_none()
                {
                    return;
                }
                body.extend(buf.drain(..size));
                buf.drain(..2);
                if size == 0 {
                    break;
                }
            }
        }
        let case = get("x-case").unwrap_or_default();
        fields.sort();
        let text: Vec<String> = fields.iter().map(|(n, v)| format!("{n}: {v}")).collect();
        let record = format!(
            "{line}\n{}\n\n{}",
            text.join("\n"),
            String::from_utf8_lossy(&body)
        );
        seen.lock().unwrap().insert(case, record);
        let target = line.split(' ').nth(1).unwrap_or_default();
        let kind = target
            .strip_prefix("/r/")
            .map(|k| k.split(['/', '?', ';', '%']).next().unwrap_or_default())
            .unwrap_or("cl");
        let (bytes, close) = reply(kind, line.starts_with("HEAD "));
        if s.write_all(&bytes).await.is_err() || close {
            return;
        }
    }
}

fn find(bytes: &[u8], what: &[u8]) -> Option<usize> {
    bytes.windows(what.len()).position(|w| w == what)
}

/// Reads into `buf` until `done` finds what it needs; None when the connection ends first.
async fn fill_until(
    s: &mut TcpStream,
    buf: &mut Vec<u8>,
    done: impl Fn(&[u8]) -> Option<usize>,
) -> Option<usize> {
    loop {
        if let Some(at) = done(buf) {
            return Some(at);
        }
        let mut chunk = [0u8; 8192];
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// One request of the corpus: its bytes, and whether it is a HEAD.
struct Case {
    name: String,
    bytes: Vec<u8>,
    head: bool,
}

fn corpus() -> Vec<Case> {
    let mut cases = Vec::new();
    let methods = ["GET", "HEAD", "DELETE", "OPTIONS", "POST", "PUT"];
    let extras = ["", "Connection: close\r\nX-Custom: a\r\nCookie: k=v\r\n"];
    for method in methods {
        for kind in KINDS {
            for (e, extra) in extras.iter().enumerate() {
                let id = cases.len();
                let name = format!("{method} /r/{kind} extra {e}");
                let body = match method {
                    "POST" => "Content-Length: 3\r\n\r\nabc".to_string(),
                    "PUT" => "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n".to_string(),
                    _ => "\r\n".to_string(),
                };
                let bytes = format!(
                    "{method} /r/{kind}?q={id} HTTP/1.1\r\nHost: {HOST}\r\nx-case: {id}\r\n{extra}{body}"
                )
                .into_bytes();
                cases.push(Case {
                    name,
                    bytes,
                    head: method == "HEAD",
                });
            }
        }
    }
    // Targets, encodings, versions, forms and refusals.
    let odd: [&str; 18] = [
        "GET /r/cl/%2e%2e/cl HTTP/1.1\r\nHost: p.example.com\r\n",
        "GET /r/cl;p=1 HTTP/1.1\r\nHost: p.example.com\r\n",
        "GET /r/%63l HTTP/1.1\r\nHost: p.example.com\r\n",
        "GET /r/cl%00 HTTP/1.1\r\nHost: p.example.com\r\n",
        "GET /r/cl%zz HTTP/1.1\r\nHost: p.example.com\r\n",
        "GET /nowhere HTTP/1.1\r\nHost: other.example.com\r\n",
        "GET /r/cl HTTP/1.1\r\n",
        "GET /r/cl HTTP/1.1\r\nHost: p.example.com\r\nHost: p.example.com\r\n",
        "GET /r/cl HTTP/1.0\r\nHost: p.example.com\r\n",
        "GET /r/chunked HTTP/1.0\r\nHost: p.example.com\r\nConnection: keep-alive\r\n",
        "GET http://p.example.com/r/cl HTTP/1.1\r\nHost: p.example.com\r\n",
        "GET /r/cl HTTP/1.1\r\nHost: P.Example.COM:6193\r\n",
        "GET /r/cl HTTP/1.1\r\nHost: p.example.com\r\nExpect: 100-continue\r\n",
        "GET /r/cl HTTP/1.1\r\nHost: p.example.com\r\nConnection: X-Drop\r\nX-Drop: 1\r\nKeep-Alive: 5\r\n",
        "GET /r/cl HTTP/1.1\r\nHost: p.example.com\r\nX-Forwarded-For: 203.0.113.9\r\n",
        "GET /key HTTP/1.1\r\nHost: p.example.com\r\n",
        "GET /key HTTP/1.1\r\nHost: p.example.com\r\nx-api-key: wrong\r\n",
        "GET /key/r/cl HTTP/1.1\r\nHost: p.example.com\r\nx-api-key: k1\r\n",
    ];
    for (i, text) in odd.iter().enumerate() {
        let id = cases.len();
        let bytes = format!("{text}x-case: {id}\r\n\r\n").into_bytes();
        cases.push(Case {
            name: format!("odd {i}: {}", text.lines().next().unwrap_or_default()),
            bytes,
            head: false,
        });
    }
    let long = format!("GET /{} HTTP/1.1\r\nHost: {HOST}\r\n\r\n", "a".repeat(9000));
    let many: String = (0..150).map(|i| format!("X-F{i}: v\r\n")).collect();
    for (i, bytes) in [
        long.into_bytes(),
        format!("GET /r/cl HTTP/1.1\r\nHost: {HOST}\r\n{many}\r\n").into_bytes(),
        b"GET /r/cl HTTP/1.1\nHost: p.example.com\n\n".to_vec(),
        b"GET /r/cl HTTP/1.1\r\nHost: p.example.com\r\nX: a\r\n b\r\n\r\n".to_vec(),
        b"POST /r/cl HTTP/1.1\r\nHost: p.example.com\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_vec(),
        b"PRI * HTTP/1.1\r\nHost: p.example.com\r\n\r\n".to_vec(),
    ]
    .into_iter()
    .enumerate()
    {
        cases.push(Case {
            name: format!("malformed {i}"),
            bytes,
            head: false,
        });
    }
    cases
}

/// What the client saw: the status line, the fields (lowercased names, sorted, no `Date`)
/// and the body.
fn seen_by_client(resp: &common::raw::Response) -> String {
    let mut lines = resp.head.lines();
    let status = lines.next().unwrap_or_default().to_string();
    let mut fields: Vec<String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim()))
        .filter(|(n, _)| n != "date")
        .map(|(n, v)| format!("{n}: {v}"))
        .collect();
    fields.sort();
    format!(
        "{status}\n{}\n\n{}",
        fields.join("\n"),
        String::from_utf8_lossy(&resp.body)
    )
}

/// The final response to `case` (interim ones skipped).
async fn exchange(proxy: &Proxy, case: &Case) -> String {
    let mut conn = Conn::open(proxy).await;
    conn.send(&case.bytes).await;
    loop {
        let resp = conn.response(case.head).await;
        if !(100..200).contains(&resp.status) {
            return seen_by_client(&resp);
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn both_engines_give_the_same_answers_and_send_the_same_requests() {
    let mut engines = Vec::new();
    for on in [true, false] {
        let (addr, seen) = recording_backend().await;
        let doc = format!(
            "headers:\n  - \"X-Served-By: aralez\"\nupstreams:\n  {HOST}:\n    paths:\n      \"/\":\n        healthcheck: false\n        servers: [\"{addr}\"]\n        headers: [\"X-Route: r\"]\n      \"/key\":\n        healthcheck: false\n        servers: [\"{addr}\"]\n        authorization: {{type: apikey, creds: \"k1\"}}\n"
        );
        engines.push((Proxy::start_with(&doc, lane(on)).await, seen));
    }
    let cases = corpus();
    assert!(cases.len() >= 150, "{} cases", cases.len());
    let mut differences = Vec::new();
    for (id, case) in cases.iter().enumerate() {
        // Shown when a case hangs (the raw client panics after 10 s).
        eprintln!("case {id}: {}", case.name);
        let lane = exchange(&engines[0].0, case).await;
        let pingora = exchange(&engines[1].0, case).await;
        if lane != pingora {
            differences.push(format!(
                "{}: client\n--- lane\n{lane}\n--- pingora\n{pingora}",
                case.name
            ));
        }
        let got = |e: usize| engines[e].1.lock().unwrap().get(&id.to_string()).cloned();
        let (a, b) = (got(0), got(1));
        if a != b {
            differences.push(format!(
                "{}: backend\n--- lane\n{}\n--- pingora\n{}",
                case.name,
                a.unwrap_or_default(),
                b.unwrap_or_default()
            ));
        }
    }
    assert!(
        differences.is_empty(),
        "{} of {} cases differ:\n{}",
        differences.len(),
        cases.len(),
        differences.join("\n\n")
    );
}
