//! The interop vectors live in the repo (so a clean clone tests anywhere); this checks
//! the copy has not drifted from `../shared/atproto-interop-tests` where that exists.

use crate::common;

use std::collections::BTreeMap;
use std::path::Path;

fn files(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                out.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    out
}

#[test]
fn in_repo_vectors_equal_shared_copy() {
    let ours = files(&common::vectors_dir());
    assert!(
        ours.contains_key("SOURCE") && ours.contains_key("LICENSE-CC0"),
        "keep SOURCE and the licence"
    );
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/atproto-interop-tests");
    if !shared.exists() {
        println!("../shared/atproto-interop-tests not present; checked the in-repo copy only");
        return;
    }
    let theirs = files(&shared);
    let ours_names: Vec<_> = ours.keys().collect();
    let their_names: Vec<_> = theirs.keys().collect();
    assert_eq!(
        ours_names, their_names,
        "the set of vector files differs from ../shared"
    );
    for (name, bytes) in &theirs {
        assert!(
            ours[name] == *bytes,
            "{name} differs from ../shared/atproto-interop-tests/{name}: copy it again"
        );
    }
    common::report("vector files identical to ../shared", theirs.len());
}
