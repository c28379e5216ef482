//! The interop lexicon vectors: schema documents accepted or refused, and record data
//! validated against the catalog; plus the embedded official lexicons.

use crate::common;

use atbox::data::ipld_from_json;
use atbox::lexicon::{Lexicons, Validation};
use atbox::syntax::Nsid;

fn catalog() -> Lexicons {
    let mut lex = Lexicons::default();
    for entry in std::fs::read_dir(common::vectors_dir().join("lexicon/catalog")).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        lex.add(serde_json::from_str(&text).unwrap()).unwrap();
    }
    lex
}

#[test]
fn lexicon_documents() {
    let mut n = 0;
    for case in common::vector_json("lexicon/lexicon-valid.json")
        .as_array()
        .unwrap()
    {
        Lexicons::default()
            .add(case["lexicon"].clone())
            .unwrap_or_else(|e| panic!("{}: {e}", case["name"]));
        n += 1;
    }
    for case in common::vector_json("lexicon/lexicon-invalid.json")
        .as_array()
        .unwrap()
    {
        assert!(
            Lexicons::default().add(case["lexicon"].clone()).is_err(),
            "{}: should be refused",
            case["name"]
        );
        n += 1;
    }
    common::report("lexicon documents", n);
}

fn validate(lex: &Lexicons, data: &serde_json::Value) -> Result<Validation, String> {
    let ipld = ipld_from_json(data).map_err(|e| e.to_string())?;
    let collection =
        Nsid::new(data["$type"].as_str().ok_or("no $type")?).map_err(|e| e.to_string())?;
    lex.validate_record(&collection, &ipld)
        .map_err(|e| e.to_string())
}

#[test]
fn record_data() {
    let lex = catalog();
    let mut n = 0;
    for case in common::vector_json("lexicon/record-data-valid.json")
        .as_array()
        .unwrap()
    {
        assert_eq!(
            validate(&lex, &case["data"]),
            Ok(Validation::Valid),
            "{}",
            case["name"]
        );
        n += 1;
    }
    for case in common::vector_json("lexicon/record-data-invalid.json")
        .as_array()
        .unwrap()
    {
        assert!(
            validate(&lex, &case["data"]).is_err(),
            "{}: should be refused",
            case["name"]
        );
        n += 1;
    }
    common::report("lexicon record data", n);
}

#[test]
fn embedded_lexicons_validate_real_records() {
    let lex = Lexicons::embedded();
    assert!(lex.len() > 250, "{} lexicons embedded", lex.len());
    lex.check_all()
        .expect("every embedded lexicon is well-formed and where its id says");
    let post = serde_json::json!({
        "$type": "app.bsky.feed.post",
        "text": "hello from atbox",
        "createdAt": "2024-05-06T07:08:09.123Z",
        "langs": ["en"],
        "facets": [{"index": {"byteStart": 0, "byteEnd": 5}, "features": [{"$type": "app.bsky.richtext.facet#tag", "tag": "hello"}]}],
    });
    assert_eq!(validate(&lex, &post), Ok(Validation::Valid));
    let mut no_date = post.clone();
    no_date.as_object_mut().unwrap().remove("createdAt");
    assert!(validate(&lex, &no_date).unwrap_err().contains("createdAt"));
    let mut long = post.clone();
    long["text"] = serde_json::json!("x".repeat(301));
    assert!(validate(&lex, &long).is_err(), "over 300 graphemes");
    let unknown = serde_json::json!({"$type": "com.example.thing", "anything": 1});
    assert_eq!(validate(&lex, &unknown), Ok(Validation::Unknown));
}

#[test]
fn embedded_lexicons_equal_shared_copy() {
    let shared = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/lexicons");
    if !shared.exists() {
        println!("../shared/lexicons not present; nothing to compare");
        return;
    }
    let ours = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("lexicons");
    assert_eq!(
        std::fs::read(ours.join("SOURCE")).unwrap(),
        std::fs::read(shared.join("SOURCE")).unwrap(),
        "SOURCE differs"
    );
    let mut n = 0;
    let mut stack = vec![ours.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "json") {
                let rel = path.strip_prefix(&ours).unwrap();
                assert_eq!(
                    std::fs::read(&path).unwrap(),
                    std::fs::read(shared.join(rel)).unwrap(),
                    "{}",
                    rel.display()
                );
                n += 1;
            }
        }
    }
    common::report("embedded lexicons identical to ../shared", n);
}
