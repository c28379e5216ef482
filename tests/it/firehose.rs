//! The firehose's mechanics over a real WebSocket: events in order with no gaps,
//! cursor replay then live tail without duplicates, future and outdated cursors, and
//! every kind of event a PDS emits. (Relay-grade validation of each commit — signature,
//! CAR slice, op inversion to `prevData` — is `firehose_relay.rs`, with the Node
//! consumer on `@atproto/repo`.)

use crate::common;

use atbox::data::{decode_cbor, Ipld};
use common::inproc;
use common::server::{start_atbox, start_plc};
use futures_util::StreamExt;
use serde_json::json;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

/// One decoded frame: header `t` (or "error"), and body.
pub(crate) fn decode_frame(bytes: &[u8]) -> (String, Ipld) {
    // Two DAG-CBOR values back to back: find where the header ends by re-encoding it.
    for split in 1..bytes.len() {
        if let Ok(header) = decode_cbor(&bytes[..split]) {
            let body = decode_cbor(&bytes[split..]).expect("frame body");
            let Ipld::Map(h) = header else {
                panic!("header is a map")
            };
            let t = match (h.get("op"), h.get("t")) {
                (Some(Ipld::Integer(1)), Some(Ipld::String(t))) => t.clone(),
                (Some(Ipld::Integer(-1)), _) => "error".into(),
                other => panic!("bad header {other:?}"),
            };
            return (t, body);
        }
    }
    panic!("undecodable frame")
}

pub(crate) fn field<'a>(body: &'a Ipld, key: &str) -> &'a Ipld {
    let Ipld::Map(m) = body else {
        panic!("body is a map")
    };
    m.get(key).unwrap_or(&Ipld::Null)
}

fn seq(body: &Ipld) -> i128 {
    match field(body, "seq") {
        Ipld::Integer(n) => *n,
        other => panic!("seq {other:?}"),
    }
}

pub(crate) type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub(crate) async fn connect(base: &str, cursor: Option<i64>) -> Socket {
    let ws = base.replace("http://", "ws://");
    let url = match cursor {
        Some(c) => format!("{ws}/xrpc/com.atproto.sync.subscribeRepos?cursor={c}"),
        None => format!("{ws}/xrpc/com.atproto.sync.subscribeRepos"),
    };
    tokio_tungstenite::connect_async(url).await.unwrap().0
}

/// Frames until `n` have arrived (or two quiet seconds).
pub(crate) async fn frames(socket: &mut Socket, n: usize) -> Vec<(String, Ipld)> {
    let mut out = Vec::new();
    while out.len() < n {
        match tokio::time::timeout(Duration::from_secs(2), socket.next()).await {
            Ok(Some(Ok(Message::Binary(b)))) => out.push(decode_frame(&b)),
            Ok(Some(Ok(_))) => {}
            _ => break,
        }
    }
    out
}

async fn post(http: &reqwest::Client, base: &str, did: &str, token: &str, text: &str) {
    let record =
        json!({"$type": "app.bsky.feed.post", "text": text, "createdAt": "2024-01-01T00:00:00Z"});
    create(http, base, did, token, record).await;
}

/// createRecord of `record` in the collection its `$type` names; must succeed.
async fn create(
    http: &reqwest::Client,
    base: &str,
    did: &str,
    token: &str,
    record: serde_json::Value,
) {
    let collection = record["$type"].as_str().unwrap().to_owned();
    let res = http
        .post(format!("{base}/xrpc/com.atproto.repo.createRecord"))
        .bearer_auth(token)
        .json(&json!({"repo": did, "collection": collection, "record": record}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_then_live_without_gaps_or_duplicates() {
    let atbox = inproc::start(&[]).await;
    let base = atbox.url.clone();
    let http = reqwest::Client::new();
    let (did, token, _) = common::api::Api::at(&atbox.url)
        .account("stream.test")
        .await;

    // Account creation: #identity, #account, the first #commit, and #sync.
    let mut live = connect(&base, None).await;
    let mut from_start = connect(&base, Some(0)).await;
    let first = frames(&mut from_start, 4).await;
    let kinds: Vec<&str> = first.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(kinds, ["#identity", "#account", "#commit", "#sync"]);
    assert_eq!(
        field(&first[0].1, "handle"),
        &Ipld::String("stream.test".into())
    );
    assert_eq!(field(&first[1].1, "active"), &Ipld::Bool(true));

    // Writes while both are connected: the live socket sees only new events.
    for i in 0..10 {
        post(&http, &base, &did, &token, &format!("post {i}")).await;
    }
    let replayed = frames(&mut from_start, 10).await;
    let tailed = frames(&mut live, 10).await;
    for batch in [&replayed, &tailed] {
        let seqs: Vec<i128> = batch.iter().map(|(_, b)| seq(b)).collect();
        assert_eq!(
            seqs,
            (5..15).collect::<Vec<_>>(),
            "in order, no gaps, no duplicates"
        );
        assert!(batch.iter().all(|(t, _)| t == "#commit"));
    }
    // Each commit chains on the one before (since = previous rev, prevData set).
    for pair in replayed.windows(2) {
        assert_eq!(field(&pair[1].1, "since"), field(&pair[0].1, "rev"));
        assert!(matches!(field(&pair[1].1, "prevData"), Ipld::Link(_)));
    }

    // A cursor in the middle replays from there, then continues live.
    let mut mid = connect(&base, Some(9)).await;
    post(&http, &base, &did, &token, "after").await;
    let got: Vec<i128> = frames(&mut mid, 6)
        .await
        .iter()
        .map(|(_, b)| seq(b))
        .collect();
    assert_eq!(got, (10..16).collect::<Vec<_>>());

    // A cursor in the future is an error frame.
    let mut future = connect(&base, Some(1000)).await;
    let got = frames(&mut future, 1).await;
    assert_eq!(got[0].0, "error");
    assert_eq!(
        field(&got[0].1, "error"),
        &Ipld::String("FutureCursor".into())
    );

    // Deactivation and a handle change are announced.
    let res = http
        .post(format!("{base}/xrpc/com.atproto.server.deactivateAccount"))
        .bearer_auth(&token)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let got = frames(&mut live, 2).await;
    let account = got
        .iter()
        .find(|(t, _)| t == "#account")
        .expect("an #account event");
    assert_eq!(field(&account.1, "active"), &Ipld::Bool(false));
    assert_eq!(
        field(&account.1, "status"),
        &Ipld::String("deactivated".into())
    );
}

/// A commit too big for the live buffer's memory (`LIVE_FRAME_MAX`) reaches a live
/// subscriber whole, in its place between small ones, read from the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_big_commit_reaches_live_subscribers_whole_and_in_order() {
    let atbox = inproc::start(&[]).await;
    let base = atbox.url.clone();
    let http = reqwest::Client::new();
    let (did, token, _) = common::api::Api::at(&base).account("big.test").await;
    let mut live = connect(&base, None).await;
    post(&http, &base, &did, &token, "before").await;
    let text = "y".repeat(3 * atbox::storage::writer::LIVE_FRAME_MAX);
    let record = json!({"$type": "com.example.big", "text": text});
    create(&http, &base, &did, &token, record).await;
    post(&http, &base, &did, &token, "after").await;

    let got = frames(&mut live, 4).await;
    assert_eq!(got.len(), 3, "three commits, nothing more");
    assert!(got.iter().all(|(t, _)| t == "#commit"));
    let seqs: Vec<i128> = got.iter().map(|(_, b)| seq(b)).collect();
    assert_eq!(seqs, vec![seqs[0], seqs[0] + 1, seqs[0] + 2]);
    let Ipld::Bytes(car) = field(&got[1].1, "blocks") else {
        panic!("a CAR")
    };
    let (_, blocks) = atbox::repo::car::read_car(car.as_slice()).unwrap();
    let big = blocks
        .iter()
        .filter_map(|(_, b)| decode_cbor(b).ok())
        .find(|v| field(v, "$type") == &Ipld::String("com.example.big".into()))
        .expect("the big record in its commit");
    assert_eq!(field(&big, "text"), &Ipld::String(text));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_http_get_gets_an_xrpc_error() {
    let atbox = inproc::start(&[]).await;
    let res = reqwest::get(format!(
        "{}/xrpc/com.atproto.sync.subscribeRepos",
        atbox.url
    ))
    .await
    .unwrap();
    assert_eq!(res.status(), 400);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"], "InvalidRequest");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_that_stops_reading_is_cut_off() {
    let atbox = inproc::start(&[("ATBOX_FIREHOSE_BUFFER_EVENTS", "16")]).await;
    let base = atbox.url.clone();
    let http = reqwest::Client::new();
    let (did, token, _) = common::api::Api::at(&atbox.url).account("slow.test").await;

    // A consumer with a tiny receive window that reads nothing.
    let port = base.rsplit(':').next().unwrap().parse::<u16>().unwrap();
    let tcp = tokio::net::TcpSocket::new_v4().unwrap();
    tcp.set_recv_buffer_size(2048).unwrap();
    let stream = tcp.connect(([127, 0, 0, 1], port).into()).await.unwrap();
    let url = format!("ws://127.0.0.1:{port}/xrpc/com.atproto.sync.subscribeRepos");
    let (mut slow, _) = tokio_tungstenite::client_async(url, stream).await.unwrap();

    // Far more events than the server keeps for laggards, with records big enough
    // (9 MB in all) to fill the socket buffers between the two ends.
    let text = "x".repeat(60_000);
    for i in 0..150 {
        let record = json!({"$type": "com.example.big", "n": i, "text": text});
        create(&http, &base, &did, &token, record).await;
    }
    // The server is still fine for everyone else...
    let res = http
        .get(format!("{base}/xrpc/_health"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    // ...and the slow consumer, when it finally reads, finds it was cut off.
    let mut saw_error = false;
    let mut received = 0;
    while let Ok(Some(msg)) = tokio::time::timeout(Duration::from_secs(5), slow.next()).await {
        match msg {
            Ok(Message::Binary(b)) => {
                let (t, body) = decode_frame(&b);
                if t == "error" {
                    assert_eq!(
                        field(&body, "error"),
                        &Ipld::String("ConsumerTooSlow".into())
                    );
                    saw_error = true;
                } else {
                    received += 1;
                }
            }
            Ok(Message::Close(_)) | Err(_) => break,
            Ok(_) => {}
        }
    }
    assert!(
        saw_error,
        "expected a ConsumerTooSlow error frame after {received} events"
    );
    assert!(
        received < 150,
        "the consumer was cut off before the end ({received} events)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cursor_older_than_the_backfill_window_gets_outdated_cursor() {
    let plc = start_plc();
    let mut atbox = start_atbox(&plc.url, &[]);
    let api = common::api::Api::new(&atbox);
    let (did, token, _) = api.account("old.test").await;
    for i in 0..3 {
        api.post_record(&did, &token, &format!("old news {i}"))
            .await;
    }
    // Restart with a zero-hour window: the log is trimmed to its newest event at start.
    let dir = atbox.data_dir.path().to_owned();
    let _ = atbox.server.child.kill();
    let _ = atbox.server.child.wait();
    let again =
        common::server::spawn_atbox(&plc.url, &dir, &[("ATBOX_FIREHOSE_BACKFILL_HOURS", "0")]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut socket = connect(&again.url, Some(0)).await;
    let got = frames(&mut socket, 2).await;
    assert_eq!(got[0].0, "#info", "{got:?}");
    assert_eq!(
        field(&got[0].1, "name"),
        &Ipld::String("OutdatedCursor".into())
    );
    // Then the stream goes on from the oldest event kept.
    assert_eq!(got[1].0, "#commit");
    assert_eq!(seq(&got[1].1), 7, "only the newest event survived the trim");
}
