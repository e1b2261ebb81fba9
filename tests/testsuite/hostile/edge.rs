//! The edge a stranger reaches without a key (issue 30): admin routes, metric labels, request
//! ids, huge texts, idle HTTP/2 connections and gRPC messages that never complete. Each test
//! fails on a server without the defence it checks.

use super::common::{self, config_for, TestServer};
use sentiment_server::Config;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const KEY: &str = "an-admin-key-of-enough-length";

/// A repository of two models, `a` (the default) and `b`, linked from a fixture.
fn repository() -> tempfile::TempDir {
    let repo = tempfile::tempdir().unwrap();
    for name in ["a", "b"] {
        let to = repo.path().join(name);
        std::fs::create_dir_all(&to).unwrap();
        let from = common::fixture("bert-tiny-3class");
        for entry in std::fs::read_dir(&from).unwrap() {
            let path = entry.unwrap().path();
            std::os::unix::fs::symlink(&path, to.join(path.file_name().unwrap())).unwrap();
        }
    }
    repo
}

fn repository_config(root: &Path) -> Config {
    let mut config = config_for(PathBuf::new());
    config.model_dir = None;
    config.model_repository = Some(root.to_path_buf());
    config.default_model = Some("a".into());
    config
}

/// `POST path` with an optional bearer key, content type and Origin; the status and the
/// answer as JSON (null when it is not JSON).
async fn admin_call(
    server: &TestServer,
    path: &str,
    key: Option<&str>,
    content_type: &str,
) -> (u16, Value) {
    let mut request = server
        .client
        .post(server.url(path))
        .header("origin", "http://evil.example")
        .header("content-type", content_type);
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let response = request.send().await.expect("send");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Waits until the repository is watched (the admin routes answer 503 before).
async fn watched(server: &TestServer, key: Option<&str>) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, _) = admin_call(server, "/v2/repository/index", key, "application/json").await;
        if status != 503 {
            return;
        }
        assert!(Instant::now() < deadline, "the repository is never watched");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn b_ready(server: &TestServer) -> u16 {
    let response = server.client.get(server.url("/v2/models/b/ready")).send();
    response.await.expect("send").status().as_u16()
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_routes_are_closed_without_a_key_and_reached_by_no_simple_cross_site_request() {
    let repo = repository();
    // No key, no opt-in: every admin route is 403, and b keeps serving.
    let server = TestServer::start(repository_config(repo.path())).await;
    for route in [
        "/v2/repository/models/b/unload",
        "/v2/repository/models/b/load",
        "/v2/repository/index",
    ] {
        for content_type in ["text/plain", "application/json"] {
            let (status, answer) = admin_call(&server, route, None, content_type).await;
            assert_eq!(
                (status, &answer["error_type"]),
                (403, &json!("forbidden")),
                "{route}"
            );
        }
    }
    assert_eq!(b_ready(&server).await, 200);
    drop(server);

    // A key guards them: without it 401; with it, a simple (text/plain) request is 415.
    let keys = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(keys.path(), format!("# admin\n{KEY}\n")).unwrap();
    let mut config = repository_config(repo.path());
    config.admin_key_file = Some(keys.path().to_path_buf());
    let server = TestServer::start(config).await;
    watched(&server, Some(KEY)).await;
    let unload = "/v2/repository/models/b/unload";
    assert_eq!(
        admin_call(&server, unload, None, "application/json")
            .await
            .0,
        401
    );
    assert_eq!(
        admin_call(&server, unload, Some(KEY), "text/plain").await.0,
        415
    );
    assert_eq!(b_ready(&server).await, 200);
    let (status, answer) = admin_call(&server, unload, Some(KEY), "application/json").await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(b_ready(&server).await, 503);
    // The inference routes stay open: the admin key is for the admin routes only.
    let (status, _) = server
        .post("/models/a/predict", &json!({"inputs": "fine"}))
        .await;
    assert_eq!(status, 200);
    drop(server);

    // Opened on purpose: still JSON only.
    let mut config = repository_config(repo.path());
    config.allow_unauthenticated_admin = true;
    let server = TestServer::start(config).await;
    watched(&server, None).await;
    assert_eq!(admin_call(&server, unload, None, "text/plain").await.0, 415);
    assert_eq!(
        admin_call(&server, unload, None, "application/json")
            .await
            .0,
        200
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn made_up_methods_and_paths_do_not_grow_metrics() {
    let server = TestServer::start(config_for(common::fixture("bert-tiny-3class"))).await;
    let scrape = || async { server.get_text("/metrics").await };
    let send = |method: String, path: String| {
        let request = server.client.request(
            reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
            server.url(&path),
        );
        async move { request.send().await.expect("send").status().as_u16() }
    };
    // Warm every series a scan touches once.
    send("FOO".into(), "/nope".into()).await;
    send("GET".into(), "/nope".into()).await;
    scrape().await;
    let before = scrape().await.len();
    for i in 0..200 {
        let status = send(format!("M{i}ETHOD{}", "X".repeat(i)), format!("/scan/{i}")).await;
        assert!(status == 404 || status == 405, "{status}");
    }
    let after = scrape().await;
    // Only counts change: a few bytes of digits, not a series per method.
    assert!(
        after.len() < before + 200,
        "/metrics grew from {before} to {} bytes",
        after.len()
    );
    assert!(after.contains(r#"method="other""#), "{after}");
    assert!(
        !after.contains("M7ETHOD"),
        "a made-up method became a label"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn long_or_odd_request_ids_are_replaced() {
    let server = TestServer::start(config_for(common::fixture("bert-tiny-3class"))).await;
    let echo = |id: String| {
        let request = server
            .client
            .post(server.url("/predict"))
            .header("x-request-id", id)
            .json(&json!({"inputs": "fine"}));
        async move {
            let response = request.send().await.expect("send");
            assert_eq!(response.status(), 200);
            response.headers()["x-request-id"]
                .to_str()
                .unwrap()
                .to_owned()
        }
    };
    let plain = "3f2b9c1e-8d4a-4b7e-9f00-123456789abc".to_string();
    assert_eq!(echo(plain.clone()).await, plain);
    for hostile in [
        "a".repeat(3000),
        "a".repeat(129),
        "x<script>y".into(),
        "two words".into(),
    ] {
        let answered = echo(hostile.clone()).await;
        assert_ne!(answered, hostile);
        assert!(answered.len() <= 128 && sentiment_server::logging::is_safe_request_id(&answered));
    }
}

/// Resident memory of this process (the server runs in it), in MB.
fn rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb / 1024.0
}

#[tokio::test(flavor = "multi_thread")]
async fn four_huge_texts_at_once_cost_little_memory_and_answer_as_their_beginning() {
    // Measures this process's memory: alone, away from the other tests.
    if !common::alone(concat!(
        module_path!(),
        "::four_huge_texts_at_once_cost_little_memory_and_answer_as_their_beginning"
    )) {
        return;
    }
    let server = std::sync::Arc::new(TestServer::start(config_for(common::minilm())).await);
    let sentences: Vec<String> = common::sst2_dev().into_iter().map(|(_, s)| s).collect();
    let mut huge = String::new();
    for sentence in sentences.iter().cycle() {
        if huge.len() > 1_900_000 {
            break;
        }
        huge.push_str(sentence);
        huge.push(' ');
    }
    // Its beginning: far more than 512 tokens, far less than the whole.
    let start: String = huge.chars().take(20_000).collect();
    let expected = server.predict_json(&json!({"inputs": start})).await;
    let idle = rss_mb();
    let peak = std::sync::Arc::new(std::sync::Mutex::new(idle));
    let sampler = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                let now = rss_mb();
                {
                    let mut peak = peak.lock().unwrap();
                    *peak = peak.max(now);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let body = std::sync::Arc::new(json!({"inputs": huge}).to_string());
    let requests: Vec<_> = (0..4)
        .map(|_| {
            let (server, body) = (server.clone(), body.clone());
            tokio::spawn(async move {
                let started = Instant::now();
                let response = server
                    .client
                    .post(server.url("/predict"))
                    .header("content-type", "application/json")
                    .body(body.to_string())
                    .send()
                    .await
                    .expect("send");
                assert_eq!(response.status(), 200);
                let answer: Value = response.json().await.unwrap();
                (answer, started.elapsed())
            })
        })
        .collect();
    for request in requests {
        let (answer, took) = request.await.unwrap();
        assert!(took < Duration::from_secs(10), "answered in {took:?}");
        assert_eq!(answer[0]["label"], expected[0]["label"]);
        let (a, b) = (
            answer[0]["score"].as_f64().unwrap(),
            expected[0]["score"].as_f64().unwrap(),
        );
        assert!((a - b).abs() < 1e-5, "{answer} vs {expected}");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    sampler.abort();
    let (peak, after) = (*peak.lock().unwrap(), rss_mb());
    assert!(peak - idle <= 150.0, "peak RSS {idle:.0} -> {peak:.0} MB");
    assert!(after - idle <= 60.0, "RSS after {idle:.0} -> {after:.0} MB");
}

/// An HTTP/2 (prior knowledge) connection that answers pings and sends nothing else; its
/// driver task ends when the server closes it.
async fn idle_h2(addr: std::net::SocketAddr) -> tokio::task::JoinHandle<()> {
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (_client, connection) = h2::client::handshake(tcp).await.expect("h2 handshake");
    tokio::spawn(async move {
        let _keep = _client;
        let _ = connection.await;
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_http2_connections_are_closed_so_new_clients_get_a_slot() {
    let mut config = config_for(common::fixture("bert-tiny-3class"));
    config.max_connections = 4;
    config.idle_timeout = Duration::from_secs(1);
    config.grpc_port = Some(0);
    let server = TestServer::start(config).await;
    let grpc = server.grpc_addr.unwrap();
    for addr in [server.addr, grpc] {
        let mut idle = Vec::new();
        for _ in 0..4 {
            idle.push(idle_h2(addr).await);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        // Every slot is held: a new client waits in the accept queue until one is closed.
        let started = Instant::now();
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (mut client, connection) = h2::client::handshake(tcp).await.expect("handshake");
        tokio::spawn(connection);
        let request = http::Request::get(format!("http://{addr}/live"))
            .body(())
            .unwrap();
        let answer = tokio::time::timeout(Duration::from_secs(10), async {
            let (response, _) = client.send_request(request, true).expect("send");
            response.await.expect("response").status()
        })
        .await;
        let took = started.elapsed();
        assert!(
            answer.is_ok(),
            "no answer within 10 s: idle connections hold every slot"
        );
        assert!(
            took < Duration::from_millis(2500),
            "answered after {took:?}"
        );
        for task in idle {
            tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .expect("the idle connection was closed")
                .unwrap();
        }
    }
}

/// A ModelInfer call whose 5-byte gRPC message header promises more than is ever sent.
async fn incomplete_model_infer(
    addr: std::net::SocketAddr,
    authorization: Option<&str>,
) -> (Duration, Option<String>) {
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut client, connection) = h2::client::handshake(tcp).await.expect("handshake");
    tokio::spawn(connection);
    let mut request = http::Request::post(format!(
        "http://{addr}/inference.GRPCInferenceService/ModelInfer"
    ))
    .header("content-type", "application/grpc")
    .header("te", "trailers");
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    let started = Instant::now();
    let (response, mut body) = client
        .send_request(request.body(()).unwrap(), false)
        .expect("send");
    // A message of 1,000 bytes is announced; 10 arrive.
    let mut frame = vec![0u8, 0, 0, 0x03, 0xe8];
    frame.extend_from_slice(&[0u8; 10]);
    // The server may have answered (and reset the stream) already: the key is checked first.
    let _ = body.send_data(frame.into(), false);
    let response = tokio::time::timeout(Duration::from_secs(20), response)
        .await
        .expect("an answer within 20 s")
        .expect("response");
    let mut status = response
        .headers()
        .get("grpc-status")
        .map(|v| v.to_str().unwrap().to_owned());
    if status.is_none() {
        let mut body = response.into_body();
        while body.data().await.is_some() {}
        let trailers = tokio::time::timeout(Duration::from_secs(20), body.trailers())
            .await
            .expect("trailers within 20 s")
            .ok()
            .flatten();
        status =
            trailers.and_then(|t| t.get("grpc-status").map(|v| v.to_str().unwrap().to_owned()));
    }
    (started.elapsed(), status)
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_messages_must_arrive_in_time_and_the_key_is_checked_before_reading_them() {
    let keys = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(keys.path(), format!("{KEY}\n")).unwrap();
    let mut config = config_for(common::fixture("bert-tiny-3class"));
    config.grpc_port = Some(0);
    config.body_read_timeout = Duration::from_secs(1);
    config.api_key_file = Some(keys.path().to_path_buf());
    let server = TestServer::start(config).await;
    let grpc = server.grpc_addr.unwrap();
    // Without a key: UNAUTHENTICATED (16) at once, before the message.
    let (took, status) = incomplete_model_infer(grpc, None).await;
    assert_eq!(status.as_deref(), Some("16"));
    assert!(took < Duration::from_millis(900), "{took:?}");
    // With the key: the message never completes, DEADLINE_EXCEEDED (4) after the time-out.
    let (took, status) = incomplete_model_infer(grpc, Some(&format!("Bearer {KEY}"))).await;
    assert_eq!(status.as_deref(), Some("4"));
    assert!(took < Duration::from_secs(3), "{took:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn health_watches_are_bounded_and_end_at_the_drain() {
    use sentiment_server::grpc::health_proto::health_client::HealthClient;
    use sentiment_server::grpc::health_proto::HealthCheckRequest;
    let mut config = config_for(common::fixture("bert-tiny-3class"));
    config.grpc_port = Some(0);
    config.shutdown_timeout = Duration::from_secs(20);
    let mut server = TestServer::start(config).await;
    let url = format!("http://{}", server.grpc_addr.unwrap());
    let channel = tonic::transport::Channel::from_shared(url)
        .unwrap()
        .connect()
        .await
        .expect("connect");
    let mut health = HealthClient::new(channel);
    let ready = || HealthCheckRequest {
        service: "ready".into(),
    };
    let mut watches = Vec::new();
    for _ in 0..16 {
        let mut watch = health.watch(ready()).await.expect("watch").into_inner();
        assert!(watch.message().await.unwrap().is_some());
        watches.push(watch);
    }
    let refused = health.watch(ready()).await.expect_err("a 17th watch");
    assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
    // The drain ends every watch: the shutdown does not wait for its time-out.
    let started = Instant::now();
    let stopped = server.shutdown();
    for mut watch in watches {
        loop {
            match tokio::time::timeout(Duration::from_secs(10), watch.message()).await {
                Ok(Ok(Some(_))) => continue,
                Ok(_) => break,
                Err(_) => panic!("a watch still open 10 s into the drain"),
            }
        }
    }
    tokio::time::timeout(Duration::from_secs(10), stopped)
        .await
        .expect("stopped within 10 s")
        .unwrap()
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
}
