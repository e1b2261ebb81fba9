//! The Open Inference Protocol over gRPC against a real server (its gRPC port on 127.0.0.1:0),
//! through the generated tonic client: health, metadata, inference in both data forms compared
//! with `/predict`, the classification extension, errors with their codes, API keys, the
//! queue's RESOURCE_EXHAUSTED, deadlines, grpc.health.v1, metrics, and one port for both.

use crate::common;

use common::{config_for, TestServer};
use sentiment_server::grpc::health_proto::health_check_response::ServingStatus;
use sentiment_server::grpc::health_proto::health_client::HealthClient;
use sentiment_server::grpc::health_proto::HealthCheckRequest;
use sentiment_server::grpc::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use sentiment_server::grpc::proto::model_infer_request::{
    InferInputTensor, InferRequestedOutputTensor,
};
use sentiment_server::grpc::proto::{
    infer_parameter::ParameterChoice, InferParameter, InferTensorContents, ModelInferRequest,
    ModelInferResponse, ModelMetadataRequest, ModelReadyRequest, ServerLiveRequest,
    ServerMetadataRequest, ServerReadyRequest,
};
use serde_json::{json, Value};
use tonic::transport::Channel;
use tonic::Code;

const MODEL: &str = "minilm-sst2";

async fn start(mut config: sentiment_server::config::Config) -> (TestServer, Channel) {
    config.grpc_port.get_or_insert(0);
    let server = TestServer::start(config).await;
    let channel = connect(server.grpc_addr.expect("the gRPC port is bound")).await;
    (server, channel)
}

async fn connect(addr: std::net::SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .expect("gRPC connection")
}

fn client(channel: &Channel) -> GrpcInferenceServiceClient<Channel> {
    GrpcInferenceServiceClient::new(channel.clone())
}

/// A request for `texts`, in `contents.bytes_contents` or (raw) in `raw_input_contents`.
fn request(texts: &[&str], raw: bool) -> ModelInferRequest {
    let mut input = InferInputTensor {
        name: "text".into(),
        datatype: "BYTES".into(),
        shape: vec![texts.len() as i64],
        ..Default::default()
    };
    let mut request = ModelInferRequest {
        model_name: MODEL.into(),
        id: "req-1".into(),
        ..Default::default()
    };
    if raw {
        let mut bytes = Vec::new();
        for t in texts {
            bytes.extend_from_slice(&(t.len() as u32).to_le_bytes());
            bytes.extend_from_slice(t.as_bytes());
        }
        request.raw_input_contents.push(bytes);
    } else {
        input.contents = Some(InferTensorContents {
            bytes_contents: texts.iter().map(|t| t.as_bytes().to_vec()).collect(),
            ..Default::default()
        });
    }
    request.inputs.push(input);
    request
}

/// The named output's shape and raw bytes.
fn raw_output<'a>(response: &'a ModelInferResponse, name: &str) -> (&'a [i64], &'a [u8]) {
    let i = response
        .outputs
        .iter()
        .position(|o| o.name == name)
        .unwrap_or_else(|| panic!("no output {name}: {response:?}"));
    (&response.outputs[i].shape, &response.raw_output_contents[i])
}

fn floats(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

fn strings(mut bytes: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let n = u32::from_le_bytes(bytes[..4].try_into().unwrap()) as usize;
        out.push(String::from_utf8(bytes[4..4 + n].to_vec()).unwrap());
        bytes = &bytes[4 + n..];
    }
    out
}

/// `/predict`'s answer for the same texts: (label, score of each label in id order).
async fn predict(server: &TestServer, texts: &[&str]) -> Vec<(String, Vec<f32>)> {
    let body = server.predict_json(&json!({"inputs": texts})).await;
    let labels = ["negative", "positive"];
    body.as_array()
        .expect("a list per text")
        .iter()
        .map(|ranked| {
            let ranked = ranked.as_array().unwrap();
            let score = |label: &str| {
                ranked
                    .iter()
                    .find(|l| l["label"].as_str().unwrap().eq_ignore_ascii_case(label))
                    .map(|l| l["score"].as_f64().unwrap() as f32)
                    .unwrap()
            };
            (
                ranked[0]["label"].as_str().unwrap().to_owned(),
                labels.iter().map(|l| score(l)).collect(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn health_metadata_and_inference_answer_as_over_http() {
    let (server, channel) = start(config_for(common::minilm())).await;
    let mut grpc = client(&channel);
    assert!(
        grpc.server_live(ServerLiveRequest {})
            .await
            .unwrap()
            .into_inner()
            .live
    );
    assert!(
        grpc.server_ready(ServerReadyRequest {})
            .await
            .unwrap()
            .into_inner()
            .ready
    );
    let ready = |version: &str| ModelReadyRequest {
        name: MODEL.into(),
        version: version.into(),
    };
    assert!(
        grpc.model_ready(ready(""))
            .await
            .unwrap()
            .into_inner()
            .ready
    );
    assert!(
        grpc.model_ready(ready("1"))
            .await
            .unwrap()
            .into_inner()
            .ready
    );
    let missing = grpc.model_ready(ready("2")).await.unwrap_err();
    assert_eq!(missing.code(), Code::NotFound, "{missing:?}");

    let metadata = grpc
        .server_metadata(ServerMetadataRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(metadata.name, "sentiment-server");
    assert!(metadata.extensions.contains(&"classification".to_string()));
    let model = grpc
        .model_metadata(ModelMetadataRequest {
            name: MODEL.into(),
            version: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(model.versions, ["1"]);
    let inputs: Vec<(&str, &str)> = model
        .inputs
        .iter()
        .map(|i| (i.name.as_str(), i.datatype.as_str()))
        .collect();
    assert_eq!(inputs, [("text", "BYTES"), ("text_pair", "BYTES")]);
    let outputs: Vec<(&str, &str, &[i64])> = model
        .outputs
        .iter()
        .map(|o| (o.name.as_str(), o.datatype.as_str(), o.shape.as_slice()))
        .collect();
    assert_eq!(
        outputs,
        [
            ("label", "BYTES", &[-1][..]),
            ("score", "FP32", &[-1][..]),
            ("scores", "FP32", &[-1, 2][..])
        ]
    );

    let texts = [
        "I loved every minute of it.",
        "A dull, lifeless mess.",
        "naïve but sweet",
    ];
    let want = predict(&server, &texts).await;
    for raw in [false, true] {
        let mut call = tonic::Request::new(request(&texts, raw));
        call.metadata_mut()
            .insert("x-request-id", "grpc-test-1".parse().unwrap());
        let response = grpc.model_infer(call).await.unwrap();
        assert_eq!(
            response.metadata().get("x-request-id").unwrap(),
            "grpc-test-1"
        );
        let response = response.into_inner();
        assert_eq!(response.model_name, MODEL);
        assert_eq!(response.model_version, "1");
        assert_eq!(response.id, "req-1");
        let (shape, label) = raw_output(&response, "label");
        assert_eq!(shape, [3]);
        let labels = strings(label);
        let (_, score) = raw_output(&response, "score");
        let score = floats(score);
        let (shape, scores) = raw_output(&response, "scores");
        assert_eq!(shape, [3, 2]);
        let scores = floats(scores);
        for (i, (label, probabilities)) in want.iter().enumerate() {
            assert_eq!(&labels[i], label, "raw={raw} {:?}", texts[i]);
            let best = probabilities.iter().copied().fold(f32::MIN, f32::max);
            assert!((score[i] - best).abs() < 1e-6, "raw={raw}");
            for (got, want) in scores[i * 2..i * 2 + 2].iter().zip(probabilities) {
                assert!((got - want).abs() < 1e-6, "raw={raw} {scores:?}");
            }
        }
    }

    // Chosen outputs in the order asked, and the classification extension on `scores`.
    let mut asked = request(&texts[..1], true);
    let classification = InferParameter {
        parameter_choice: Some(ParameterChoice::Int64Param(2)),
    };
    asked.outputs = vec![
        InferRequestedOutputTensor {
            name: "scores".into(),
            parameters: [("classification".to_string(), classification)].into(),
        },
        InferRequestedOutputTensor {
            name: "label".into(),
            ..Default::default()
        },
    ];
    let response = grpc.model_infer(asked).await.unwrap().into_inner();
    let names: Vec<&str> = response.outputs.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(names, ["scores", "label"]);
    assert_eq!(response.outputs[0].datatype, "BYTES");
    assert_eq!(response.outputs[0].shape, [1, 2]);
    let classes = strings(&response.raw_output_contents[0]);
    let best = format!("{:.6}:1:", want[0].1[1]);
    assert!(classes[0].starts_with(&best), "{classes:?} vs {best}");

    // Counted per method and code on /metrics.
    let metrics = server.get_text("/metrics").await;
    assert!(
        metrics.contains(r#"sentiment_grpc_requests_total{method="ModelInfer",code="OK"} 3"#),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_get_the_protocols_codes_and_our_error_type() {
    let (_server, channel) = start(config_for(common::minilm())).await;
    let mut grpc = client(&channel);
    let code = |r: Result<tonic::Response<ModelInferResponse>, tonic::Status>| {
        let status = r.unwrap_err();
        let kind = status
            .metadata()
            .get("error-type")
            .map(|v| v.to_str().unwrap().to_owned());
        assert!(!status.message().is_empty());
        (status.code(), kind.unwrap_or_default())
    };
    let invalid = (Code::InvalidArgument, "bad_request".to_string());

    let mut wrong_model = request(&["fine"], false);
    wrong_model.model_name = "other".into();
    assert_eq!(
        code(grpc.model_infer(wrong_model).await),
        (Code::NotFound, "model_not_found".into())
    );
    let mut wrong_version = request(&["fine"], false);
    wrong_version.model_version = "7".into();
    assert_eq!(
        code(grpc.model_infer(wrong_version).await).0,
        Code::NotFound
    );

    let mut wrong_name = request(&["fine"], false);
    wrong_name.inputs[0].name = "sentence".into();
    assert_eq!(code(grpc.model_infer(wrong_name).await), invalid);
    let mut wrong_type = request(&["fine"], false);
    wrong_type.inputs[0].datatype = "FP32".into();
    assert_eq!(code(grpc.model_infer(wrong_type).await), invalid);
    let mut wrong_shape = request(&["fine"], true);
    wrong_shape.inputs[0].shape = vec![2];
    assert_eq!(code(grpc.model_infer(wrong_shape).await), invalid);
    let mut both = request(&["fine"], false);
    both.raw_input_contents.push(vec![0, 0, 0, 0]);
    assert_eq!(code(grpc.model_infer(both).await), invalid);
    let mut no_data = request(&["fine"], false);
    no_data.inputs[0].contents = None;
    assert_eq!(code(grpc.model_infer(no_data).await), invalid);
    let mut truncated = request(&["fine"], true);
    truncated.raw_input_contents[0].pop();
    assert_eq!(code(grpc.model_infer(truncated).await), invalid);
    let mut not_utf8 = request(&["fine"], false);
    not_utf8.inputs[0].contents.as_mut().unwrap().bytes_contents[0] = vec![0xff, 0xfe];
    assert_eq!(code(grpc.model_infer(not_utf8).await), invalid);
    assert_eq!(
        code(grpc.model_infer(request(&["  "], false)).await),
        invalid
    );
    let too_many: Vec<&str> = vec!["x"; 1000];
    assert_eq!(
        code(grpc.model_infer(request(&too_many, false)).await),
        invalid
    );
    let mut unknown_output = request(&["fine"], false);
    unknown_output.outputs.push(InferRequestedOutputTensor {
        name: "logits".into(),
        ..Default::default()
    });
    assert_eq!(code(grpc.model_infer(unknown_output).await), invalid);

    // Still answers after all that.
    grpc.model_infer(request(&["fine"], false)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn api_keys_queue_limits_and_deadlines_apply_to_grpc_too() {
    let key = "grpc-test-key-0123456789";
    let mut config = config_for(common::minilm());
    config.api_key = Some(key.into());
    config.max_queue_size = 2;
    let (_server, channel) = start(config).await;
    let mut grpc = client(&channel);
    // Health and metadata stay open, as over HTTP.
    assert!(
        grpc.server_ready(ServerReadyRequest {})
            .await
            .unwrap()
            .into_inner()
            .ready
    );
    let status = grpc
        .model_infer(request(&["fine"], false))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    let with_key = |texts: &[&str], key: &str| {
        let mut call = tonic::Request::new(request(texts, false));
        call.metadata_mut()
            .insert("authorization", format!("Bearer {key}").parse().unwrap());
        call
    };
    let status = grpc
        .model_infer(with_key(&["fine"], "wrong-key-0123456789"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    grpc.model_infer(with_key(&["fine", "good"], key))
        .await
        .unwrap();
    // More texts than the queue holds: RESOURCE_EXHAUSTED, as HTTP's 429.
    let status = grpc
        .model_infer(with_key(&["one", "two", "three"], key))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert_eq!(status.metadata().get("error-type").unwrap(), "overloaded");

    // The server's --request-timeout: DEADLINE_EXCEEDED, as HTTP's 504.
    let mut config = config_for(common::minilm());
    config.request_timeout = std::time::Duration::from_millis(1);
    drop(grpc);
    drop(_server);
    let (_server, channel) = start(config).await;
    let long = "long text ".repeat(300);
    let texts: Vec<&str> = (0..32).map(|_| long.as_str()).collect();
    let status = client(&channel)
        .model_infer(request(&texts, true))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_health_follows_liveness_and_readiness() {
    let mut config = config_for(common::minilm());
    config.grpc_port = Some(0);
    let mut server = TestServer::start_unready(config).await;
    let channel = connect(server.grpc_addr.unwrap()).await;
    let mut health = HealthClient::new(channel.clone());
    let check = |service: &str| HealthCheckRequest {
        service: service.into(),
    };
    let serving = ServingStatus::Serving as i32;
    let live = health.check(check("")).await.unwrap().into_inner().status;
    assert_eq!(live, serving, "live while loading");
    let mut watch = health
        .watch(check("inference.GRPCInferenceService"))
        .await
        .unwrap()
        .into_inner();
    let first = watch.message().await.unwrap().unwrap().status;
    if first != serving {
        assert_eq!(first, ServingStatus::NotServing as i32);
        // The model loads: the watch reports the change.
        let next = tokio::time::timeout(std::time::Duration::from_secs(120), watch.message())
            .await
            .expect("readiness within 2 minutes")
            .unwrap()
            .unwrap();
        assert_eq!(next.status, serving);
    }
    server = server.wait_ready().await;
    for service in ["", "live", "ready", "inference.GRPCInferenceService"] {
        let status = health
            .check(check(service))
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(status, serving, "{service:?}");
    }
    let unknown = health.check(check("nope")).await.unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);

    let stopped = server.shutdown();
    stopped.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn one_port_serves_http_and_grpc_when_the_ports_are_equal() {
    // A fixed port is needed for "the same": take a free one from the system first.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut config = config_for(common::minilm());
    config.grpc_port = Some(port);
    config.host = "127.0.0.1".into();
    config.port = port;
    let listeners = sentiment_server::server::bind(&config).await.unwrap();
    assert!(listeners.grpc_on_http && listeners.grpc.is_none());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let _exclusive = common::exclusive().await;
    let handle = tokio::spawn(sentiment_server::server::run(
        config,
        listeners,
        async move {
            let _ = stopped.await;
        },
    ));
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    common::wait_healthy(&http, &base).await;
    let body: Value = http
        .post(format!("{base}/predict"))
        .json(&json!({"inputs": "I love it"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        body[0]["label"].as_str().unwrap().to_lowercase(),
        "positive"
    );
    let channel = connect(([127, 0, 0, 1], port).into()).await;
    let response = client(&channel)
        .model_infer(request(&["I love it"], false))
        .await
        .unwrap()
        .into_inner();
    let (_, label) = raw_output(&response, "label");
    assert_eq!(strings(label)[0].to_lowercase(), "positive");
    let _ = stop.send(());
    handle.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_shutdown_answers_grpc_requests_in_flight_then_refuses_new_ones() {
    let (mut server, channel) = start(config_for(common::minilm())).await;
    let long = "an honest, moving and often very funny film about growing up ".repeat(8);
    let texts: Vec<&str> = (0..32).map(|_| long.as_str()).collect();
    let in_flight: Vec<_> = (0..6)
        .map(|_| {
            let mut grpc = client(&channel);
            let request = request(&texts, true);
            tokio::spawn(async move { grpc.model_infer(request).await })
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let stopped = server.shutdown();
    for call in in_flight {
        let response = call.await.unwrap().expect("answered while draining");
        assert_eq!(response.into_inner().outputs.len(), 3);
    }
    stopped.await.unwrap().unwrap();
    // The listener is closed: a new call fails to connect or is refused.
    let after = client(&channel)
        .model_infer(request(&["fine"], false))
        .await;
    assert!(after.is_err(), "answered after shutdown");
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_inferences_land_in_the_prediction_log_with_their_request_id() {
    let pg = common::postgres::Postgres::start();
    let mut config = config_for(common::minilm());
    config.database_url = Some(pg.url());
    config.database_password_file = Some(pg.password_file());
    let (_server, channel) = start(config).await;
    let mut call = tonic::Request::new(request(
        &["dull and lifeless", "a joy from start to finish"],
        true,
    ));
    call.metadata_mut()
        .insert("x-request-id", "grpc-logged".parse().unwrap());
    client(&channel).model_infer(call).await.unwrap();
    let rows = pg
        .wait_rows(
            "SELECT request_id, input_index, label FROM predictions ORDER BY input_index",
            2,
        )
        .await;
    for (i, (row, label)) in rows.iter().zip(["NEGATIVE", "POSITIVE"]).enumerate() {
        assert_eq!(row.get::<_, String>(0), "grpc-logged");
        assert_eq!(row.get::<_, i32>(1), i as i32);
        assert_eq!(row.get::<_, String>(2), label);
    }
}

/// Text pairs through the optional `text_pair` input, typed and raw, against PyTorch.
#[tokio::test(flavor = "multi_thread")]
async fn text_pairs_travel_as_the_optional_text_pair_input() {
    let (_server, channel) = start(config_for(common::nli())).await;
    let mut grpc = client(&channel);
    let refs = common::pair_references();
    let refs = &refs[..6];
    let texts: Vec<&str> = refs.iter().map(|r| r.text.as_str()).collect();
    let seconds: Vec<&str> = refs.iter().map(|r| r.text_pair.as_str()).collect();
    for raw in [false, true] {
        let mut request = request(&texts, raw);
        request.model_name = "bert-tiny-nli".into();
        let pair = request_for_pairs(&seconds, raw);
        request.inputs.extend(pair.inputs);
        request.raw_input_contents.extend(pair.raw_input_contents);
        let response = grpc.model_infer(request).await.unwrap().into_inner();
        let labels = strings(raw_output(&response, "label").1);
        let scores = floats(raw_output(&response, "scores").1);
        for ((r, label), got) in refs.iter().zip(&labels).zip(scores.chunks_exact(3)) {
            assert_eq!(label, &r.label);
            for (g, want) in got.iter().zip(&r.scores) {
                assert!((g - want).abs() < 1e-4, "{got:?} vs {:?}", r.scores);
            }
        }
    }
    let invalid = |r: Result<tonic::Response<ModelInferResponse>, tonic::Status>| {
        let status = r.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert_eq!(status.metadata().get("error-type").unwrap(), "bad_request");
        status.message().to_owned()
    };
    let mut short = request(&texts, false);
    short.model_name = "bert-tiny-nli".into();
    short
        .inputs
        .extend(request_for_pairs(&seconds[..2], false).inputs);
    let message = invalid(grpc.model_infer(short).await);
    assert!(message.contains("one second text per text"), "{message}");
    let mut mixed = request(&texts, true);
    mixed.model_name = "bert-tiny-nli".into();
    // Raw contents for one input of two: each input needs its entry.
    mixed
        .inputs
        .extend(request_for_pairs(&seconds, false).inputs);
    let message = invalid(grpc.model_infer(mixed).await);
    assert!(message.contains("1 entries for 2 inputs"), "{message}");
}

/// A request whose one input is `text_pair`, built as [`request`] builds `text`.
fn request_for_pairs(seconds: &[&str], raw: bool) -> ModelInferRequest {
    let mut request = request(seconds, raw);
    request.inputs[0].name = "text_pair".into();
    request
}

#[tokio::test]
async fn reflection_lists_the_services_for_tools_without_proto_files() {
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    let (_server, channel) = start(config_for(common::minilm())).await;
    let mut reflection = ServerReflectionClient::new(channel);
    let ask = |request| ServerReflectionRequest {
        host: String::new(),
        message_request: Some(request),
    };
    let requests = vec![
        ask(MessageRequest::ListServices(String::new())),
        ask(MessageRequest::FileContainingSymbol(
            "inference.GRPCInferenceService".into(),
        )),
    ];
    let mut answers = reflection
        .server_reflection_info(tokio_stream::iter(requests))
        .await
        .expect("reflection answers")
        .into_inner();
    let Some(MessageResponse::ListServicesResponse(list)) =
        answers.message().await.unwrap().unwrap().message_response
    else {
        panic!("not a list of services");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for service in ["inference.GRPCInferenceService", "grpc.health.v1.Health"] {
        assert!(names.iter().any(|n| n == service), "{service} in {names:?}");
    }
    let Some(MessageResponse::FileDescriptorResponse(files)) =
        answers.message().await.unwrap().unwrap().message_response
    else {
        panic!("no descriptor for the inference service");
    };
    assert!(!files.file_descriptor_proto.is_empty());
}
