//! The in-process tier: atbox's whole router (`atbox::server::router`) served inside the
//! test's own runtime on a loopback port, over a temporary data directory, with a PLC
//! directory stand-in written here (axum): no child process and no Node. Behaviour
//! tests use this unless the point is the process itself (crash safety, signals,
//! descriptor limits, the CLI) or a real peer (the official clients, a browser).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// A running in-process atbox. Stops when dropped.
pub struct InProcess {
    /// `http://localhost:<port>`, as `start_atbox` gives it.
    pub url: String,
    pub plc_url: String,
    /// The server's state, for what no HTTP call shows (the status snapshot's facts).
    pub state: atbox::pds::Ctx,
    _data_dir: tempfile::TempDir,
    stop: tokio::sync::watch::Sender<bool>,
}

impl InProcess {
    /// The server's data directory.
    pub fn data_dir(&self) -> &std::path::Path {
        self._data_dir.path()
    }

    /// Runs an admin command (`atbox account ...`) on this server's data directory.
    pub fn cli(&self, args: &[&str]) -> String {
        super::server::cli_on(self._data_dir.path(), &self.plc_url, args)
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// Starts atbox in this process with the test harness's settings (as `start_atbox`:
/// `ATBOX_HOSTNAME=localhost`, data in a temporary directory, its own PLC stand-in)
/// and `extra` `ATBOX_*` settings on top.
pub async fn start(extra: &[(&str, &str)]) -> InProcess {
    let plc_url = start_plc().await;
    start_on(tempfile::tempdir().unwrap(), plc_url, extra).await
}

/// As [`start`], over `data_dir` as it is (a restored backup) and the PLC directory at
/// `plc_url` (the one the accounts were made with).
pub async fn start_on(
    data_dir: tempfile::TempDir,
    plc_url: String,
    extra: &[(&str, &str)],
) -> InProcess {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut env: HashMap<String, String> = [
        ("ATBOX_LISTEN", format!("127.0.0.1:{port}")),
        ("ATBOX_DATA_DIR", data_dir.path().display().to_string()),
        ("ATBOX_PLC_URL", plc_url.clone()),
        ("ATBOX_HOSTNAME", "localhost".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    for (k, v) in extra {
        env.insert((*k).to_owned(), (*v).to_owned());
    }
    env.retain(|_, v| !v.is_empty());
    let config = atbox::config::load(None, &|k| env.get(k).cloned()).unwrap();
    let state: atbox::pds::Ctx = Arc::new(atbox::pds::AppState::open(config).unwrap());
    let app = atbox::server::router(state.clone());
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(atbox::http::serve::serve(
        listener,
        app,
        atbox::server::connection_caps(&state.config),
        stopped,
    ));
    InProcess {
        url: format!("http://localhost:{port}"),
        plc_url,
        state,
        _data_dir: data_dir,
        stop,
    }
}

/// atbox in this process with the real PLC directory stand-in and the AppView stand-in
/// that verifies every service token (`appview-standin.mjs`), proxying to 127.0.0.1
/// allowed. Fields drop in order: the box stops before the stand-ins. Bind every
/// field (`_plc`), or a stand-in stops at once.
pub struct WithAppView {
    pub atbox: InProcess,
    pub plc: super::server::Running,
    pub appview: super::server::Running,
}

/// Starts [`WithAppView`], with `extra` `ATBOX_*` settings on top.
pub async fn start_with_appview(extra: &[(&str, &str)]) -> WithAppView {
    let plc = super::server::start_plc();
    let (appview, info) = super::server::start_standin("appview-standin.mjs", &["--plc", &plc.url]);
    let did = info["did"].as_str().unwrap().to_owned();
    let mut settings = vec![
        ("ATBOX_PLC_URL", plc.url.as_str()),
        ("ATBOX_APPVIEW_URL", appview.url.as_str()),
        ("ATBOX_APPVIEW_DID", did.as_str()),
        ("ATBOX_PROXY_ALLOW_PRIVATE", "true"),
    ];
    settings.extend_from_slice(extra);
    let atbox = start(&settings).await;
    WithAppView {
        atbox,
        plc,
        appview,
    }
}

type Ops = Arc<Mutex<HashMap<String, Vec<Value>>>>;

/// A PLC directory stand-in: keeps each DID's operations as submitted, answers the
/// document the last one describes, and the last operation. (Signatures and `prev`
/// chains are the real directory's business, checked by the Node stand-in in the
/// process tier.)
async fn start_plc() -> String {
    let ops: Ops = Default::default();
    let app = Router::new()
        .route("/{did}", get(document).post(submit))
        .route("/{did}/log/last", get(last))
        .route("/_standin/ops", get(all_ops))
        .with_state(ops);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

async fn submit(
    State(ops): State<Ops>,
    Path(did): Path<String>,
    Json(op): Json<Value>,
) -> StatusCode {
    ops.lock().unwrap().entry(did).or_default().push(op);
    StatusCode::OK
}

/// Every operation accepted, in order (as the Node stand-in's `/_standin/ops`).
async fn all_ops(State(ops): State<Ops>) -> Json<Vec<Value>> {
    Json(ops.lock().unwrap().values().flatten().cloned().collect())
}

async fn last(State(ops): State<Ops>, Path(did): Path<String>) -> Result<Json<Value>, StatusCode> {
    let ops = ops.lock().unwrap();
    let op = ops
        .get(&did)
        .and_then(|o| o.last())
        .ok_or(StatusCode::NOT_FOUND)?;
    Ok(Json(op.clone()))
}

async fn document(
    State(ops): State<Ops>,
    Path(did): Path<String>,
) -> Result<Json<Value>, StatusCode> {
    let ops = ops.lock().unwrap();
    let op = ops
        .get(&did)
        .and_then(|o| o.last())
        .ok_or(StatusCode::NOT_FOUND)?;
    let methods: Vec<Value> = op["verificationMethods"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(name, key)| {
            json!({
                "id": format!("{did}#{name}"),
                "type": "Multikey",
                "controller": did,
                "publicKeyMultibase": key.as_str().unwrap_or("").trim_start_matches("did:key:"),
            })
        })
        .collect();
    let services: Vec<Value> = op["services"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(id, s)| json!({"id": format!("#{id}"), "type": s["type"], "serviceEndpoint": s["endpoint"]}))
        .collect();
    Ok(Json(json!({
        "@context": ["https://www.w3.org/ns/did/v1", "https://w3id.org/security/multikey/v1"],
        "id": did,
        "alsoKnownAs": op["alsoKnownAs"],
        "verificationMethod": methods,
        "service": services,
    })))
}
