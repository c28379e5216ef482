//! Unreferenced blobs are removed (file and metadata) once past their grace period;
//! blobs a record references are kept. Runs the PDS operations in-process.

use atbox::auth::tokens::Scope;
use atbox::auth::Session;
use atbox::pds::records::{WriteAction, WriteRequest};
use atbox::pds::{blobs, records, AppState};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreferenced_blobs_are_collected_referenced_ones_kept() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = atbox::config::development_default();
    config.data_dir = dir.path().to_owned();
    let state = AppState::open(config).unwrap();

    // An account made without the PLC directory: a did:web whose document is local.
    let did = "did:web:gc.example";
    let account = atbox::storage::accounts::Account {
        did: did.into(),
        handle: "gc.test".into(),
        email: None,
        password_hash: atbox::auth::password::hash("x"),
        signing_key: atbox::crypto::Keypair::generate(atbox::crypto::KeyType::K256)
            .private_bytes()
            .to_vec(),
        created_at: "2024-01-01T00:00:00Z".into(),
        status: atbox::storage::accounts::AccountStatus::Active,
        email_confirmed: false,
    };
    state
        .storage
        .write(move |conn| atbox::storage::accounts::insert_account(conn, &account))
        .await
        .unwrap();
    let session = Session::new(did.into(), Scope::Access);

    let png = |n: u8| {
        let mut b = b"\x89PNG\r\n\x1a\n".to_vec();
        b.extend([n; 100]);
        futures_util::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from(b))])
    };
    let kept = blobs::upload(&state, &session, png(1), None).await.unwrap();
    let dropped = blobs::upload(&state, &session, png(2), None).await.unwrap();
    let profile = json!({"$type": "app.bsky.actor.profile", "avatar": kept.blob});
    let write = WriteRequest {
        action: WriteAction::Update,
        collection: "app.bsky.actor.profile".into(),
        rkey: Some("self".into()),
        record: Some(profile),
        swap_record: None,
    };
    records::write(&state, &session, did, vec![write], None, None)
        .await
        .unwrap();

    let path = |b: &blobs::UploadedBlob| {
        let cid = atbox::data::parse_cid(&b.blob.link.cid).unwrap();
        state.storage.blobs.path(did, &cid)
    };
    assert!(path(&kept).exists() && path(&dropped).exists());
    // Within the grace period nothing goes.
    assert_eq!(
        blobs::collect_garbage(&state, atbox::storage::unix_now() - 3600)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        blobs::collect_garbage(&state, atbox::storage::unix_now() + 1)
            .await
            .unwrap(),
        1
    );
    assert!(path(&kept).exists(), "a referenced blob stays");
    assert!(
        !path(&dropped).exists(),
        "an unreferenced blob's file is gone"
    );
}
