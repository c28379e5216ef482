//! Unreferenced blobs are removed (file and metadata) once past their grace period;
//! blobs a record references are kept. Runs the PDS operations in-process.

use atbox::auth::tokens::Scope;
use atbox::auth::Session;
use atbox::pds::records::{WriteAction, WriteRequest};
use atbox::pds::{blobs, records};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreferenced_blobs_are_collected_referenced_ones_kept() {
    let dir = tempfile::tempdir().unwrap();
    let state = crate::common::open_state(dir.path());

    // An account made without the PLC directory: a did:web whose document is local.
    let did = "did:web:gc.example";
    crate::common::insert_account(&state, did, "gc.test", atbox::auth::password::hash("x")).await;
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
