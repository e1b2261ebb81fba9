//! Hostile input over a real socket: oversized and pathological bodies, odd text, and clients
//! that trickle their request. Each gets its documented answer, no file descriptor or task is
//! left behind, and the server stays healthy and correct.

use crate::common;

use common::{config_for, TestServer};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

/// The first reference sentence still gets PyTorch's label.
async fn still_correct(server: &TestServer) {
    let reference = &common::references(&common::minilm())[0];
    let body = server
        .predict_json(&json!({"inputs": reference.text}))
        .await;
    assert_eq!(body[0]["label"], reference.label.as_str(), "{body}");
    assert_eq!(server.get_json("/health").await["status"], "ok");
}

async fn post(server: &TestServer, body: impl Into<reqwest::Body>) -> (u16, Value, Duration) {
    let started = Instant::now();
    let response = server
        .client
        .post(server.url("/predict"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("send");
    let status = response.status().as_u16();
    let json = response.json().await.expect("JSON body");
    (status, json, started.elapsed())
}

/// Writes `head` and then `body_bytes` in 1 MB chunks from another thread while reading the
/// answer: the server may answer (413) before the body is sent, as it should.
fn raw_exchange(addr: std::net::SocketAddr, head: String, body_bytes: usize) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    let feeder = std::thread::spawn(move || {
        writer.write_all(head.as_bytes())?;
        let chunk = vec![b' '; 1 << 20];
        let mut sent = 0;
        while sent < body_bytes {
            let n = chunk.len().min(body_bytes - sent);
            writer.write_all(&chunk[..n])?;
            sent += n;
        }
        Ok::<usize, std::io::Error>(sent)
    });
    let mut answer = vec![0u8; 4096];
    let n = stream.read(&mut answer).unwrap_or(0);
    let sent = feeder.join().unwrap();
    // The server must not have read (and buffered) the whole 100 MB to say no.
    assert!(
        sent.is_err() || body_bytes < 10 << 20,
        "the server read all {body_bytes} bytes before refusing"
    );
    String::from_utf8_lossy(&answer[..n]).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pathological_bodies_get_their_documented_status_and_nothing_breaks() {
    let server = TestServer::start(config_for(common::minilm())).await;

    // 10,000 levels of nesting, where a text belongs, at the top and in an unknown field: no
    // stack overflow; a wrong type (422) where the schema says so, else the parser's depth
    // limit (400).
    let nest = |inner: &str| format!("{}{inner}{}", "[".repeat(10_000), "]".repeat(10_000));
    for (body, expected) in [
        (
            format!("{{\"inputs\": {}}}", nest("\"a\"")),
            (422, "validation"),
        ),
        (nest("1"), (422, "validation")),
        (
            format!("{{\"inputs\": \"a\", \"top_k\": {}}}", nest("1")),
            (422, "validation"),
        ),
        (format!("{{\"x\": {}", nest("{}")), (400, "malformed_json")),
    ] {
        let (status, error, _) = post(&server, body).await;
        assert_eq!(
            (status, error["error_type"].as_str().unwrap_or_default()),
            expected,
            "{error}"
        );
    }

    // 100,000 inputs: refused whole, quickly, with the limit named.
    let many: Vec<&str> = vec!["a"; 100_000];
    let (status, error, took) = post(&server, json!({ "inputs": many }).to_string()).await;
    assert_eq!(
        (status, error["error_type"].as_str()),
        (422, Some("validation")),
        "{error}"
    );
    assert!(error["error"].as_str().unwrap().contains("32"), "{error}");
    assert!(took < Duration::from_secs(2), "{took:?}");

    // A 1 MB single word: cut to the model's length and answered.
    let word = "x".repeat(1 << 20);
    let (status, body, took) = post(&server, json!({ "inputs": word }).to_string()).await;
    assert_eq!(status, 200, "{body}");
    assert!(took < Duration::from_secs(5), "{took:?}");

    // NUL, control characters, lone surrogate escapes, and text from every Unicode plane.
    let planes: String = [
        'A',
        'é',
        '中',
        '😀',
        '𠀀',
        '𰀀',
        '\u{E0041}',
        '\u{F0000}',
        '\u{10FFFD}',
    ]
    .iter()
    .collect();
    for text in [
        "nul \u{0} inside".to_string(),
        "\u{1}\u{2}\u{7}\u{8}\u{1b}[31m escape \u{7f}\u{85}\u{200b}\u{feff}\u{202e}".to_string(),
        planes,
        "\u{fffd}\u{fffe}".to_string(),
    ] {
        let (status, body, _) = post(&server, json!({ "inputs": text }).to_string()).await;
        assert_eq!(status, 200, "{text:?}: {body}");
        assert!(
            body[0]["score"]
                .as_f64()
                .is_some_and(|s| (0.0..=1.0).contains(&s)),
            "{body}"
        );
    }
    // Invalid UTF-8 anywhere in the body, even in a member the request ignores: malformed.
    let mut body = br#"{"inputs": "fine", "x": "#.to_vec();
    body.extend_from_slice(b"\"\xff\xfe\"}");
    let (status, error, _) = post(&server, body).await;
    assert_eq!(
        (status, error["error_type"].as_str()),
        (400, Some("malformed_json")),
        "{error}"
    );
    // An escaped lone surrogate is not a Unicode scalar value: malformed.
    let (status, error, _) = post(&server, r#"{"inputs": "\ud800"}"#).await;
    assert_eq!(status, 400, "{error}");

    // 100 MB, announced by Content-Length and streamed chunked: 413 without reading it all.
    let head = "POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000000\r\n\r\n";
    let answer = raw_exchange(server.addr, head.to_string(), 100_000_000);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("payload_too_large"), "{answer}");
    still_correct(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off_and_leave_nothing_behind() {
    let mut config = config_for(common::minilm());
    config.header_read_timeout = Duration::from_secs(1);
    config.body_read_timeout = Duration::from_secs(1);
    let server = TestServer::start(config).await;
    still_correct(&server).await;
    let runtime = tokio::runtime::Handle::current().metrics();
    let (fds_before, tasks_before) = (open_fds(), runtime.num_alive_tasks());

    let addr = server.addr;
    let trickle = |head: &'static str, then: &'static [u8]| {
        std::thread::spawn(move || {
            let mut stream = TcpStream::connect(addr).expect("connect");
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            let started = Instant::now();
            stream.write_all(head.as_bytes()).unwrap();
            // One byte a quarter second: never finishes within the deadlines.
            for byte in then.iter().cycle().take(40) {
                if stream.write_all(&[*byte]).is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(250));
                let mut peek = [0u8; 1];
                stream.set_nonblocking(true).unwrap();
                let closed = stream.peek(&mut peek).is_ok();
                stream.set_nonblocking(false).unwrap();
                if closed {
                    break;
                }
            }
            let mut answer = String::new();
            let _ = stream.read_to_string(&mut answer);
            (answer, started.elapsed())
        })
    };
    // Slow headers (slowloris), a silent connection, and a body that trickles in.
    let slow_headers: Vec<_> = (0..20)
        .map(|_| trickle("POST /predict HTTP/1.1\r\nHost: x\r\n", b"X-Slow: aaaa"))
        .collect();
    let silent: Vec<_> = (0..10).map(|_| trickle("", b"")).collect();
    let slow_body: Vec<_> = (0..20)
        .map(|_| trickle("POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"inputs\": \"", b"a"))
        .collect();

    // Meanwhile a normal client is served as usual.
    still_correct(&server).await;

    for handle in slow_headers.into_iter().chain(silent) {
        let (answer, took) = handle.join().unwrap();
        assert!(
            took < Duration::from_secs(5),
            "a slow-header connection lived {took:?}"
        );
        assert!(!answer.contains("200 OK"), "{answer}");
    }
    for handle in slow_body {
        let (answer, took) = handle.join().unwrap();
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(
            answer.contains("body_timeout") && answer.to_lowercase().contains("connection: close"),
            "{answer}"
        );
        assert!(
            took < Duration::from_secs(5),
            "a slow-body connection lived {took:?}"
        );
    }
    // Every connection and its task are gone again.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (fds, tasks) = (open_fds(), runtime.num_alive_tasks());
        if fds <= fds_before && tasks <= tasks_before {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "leak: fds {fds_before} -> {fds}, tasks {tasks_before} -> {tasks}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    still_correct(&server).await;
}

mod edge;
