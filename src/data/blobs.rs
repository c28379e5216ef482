//! Blob references in atproto data: `{"$type": "blob", "ref": <link>, …}` anywhere in
//! a record (what a write must find uploaded, and what a restore re-indexes).

use super::{Cid, Ipld};

/// A blob a record refers to, with the type and size the record claims for it.
#[derive(Debug, Clone)]
pub struct BlobRef {
    pub cid: Cid,
    pub mime_type: Option<String>,
    pub size: Option<i128>,
}

/// Blob references in a record: `{"$type": "blob", "ref": <link>, ...}` anywhere.
pub fn blob_refs(value: &Ipld, out: &mut Vec<BlobRef>) {
    match value {
        Ipld::Map(m) => {
            if let (Some(Ipld::String(t)), Some(Ipld::Link(cid))) = (m.get("$type"), m.get("ref")) {
                if t == "blob" {
                    let mime = match m.get("mimeType") {
                        Some(Ipld::String(s)) => Some(s.clone()),
                        _ => None,
                    };
                    let size = match m.get("size") {
                        Some(Ipld::Integer(n)) => Some(*n),
                        _ => None,
                    };
                    out.push(BlobRef {
                        cid: *cid,
                        mime_type: mime,
                        size,
                    });
                    return;
                }
            }
            m.values().for_each(|v| blob_refs(v, out));
        }
        Ipld::List(items) => items.iter().for_each(|v| blob_refs(v, out)),
        _ => {}
    }
}
