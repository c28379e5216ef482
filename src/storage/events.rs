//! The firehose event log: every repo and account event, sequenced in the same
//! transaction as the change it describes. Frames are stored in the repo log (see
//! `storage::log`), kept for the backfill window, then compacted away.

use super::log::{Change, RepoLog, StoredEvent};
use super::writer::{Outbox, SeqEvent};
use super::StorageError;
use rusqlite::Connection;
use std::collections::HashMap;
use std::sync::Arc;

pub use super::log::Kind;

/// The next sequence number. The writer numbers its batch's events in order, and a
/// rolled-back job's numbers are reused by the next job: no gaps.
pub fn next_seq(outbox: &mut Outbox) -> i64 {
    let seq = outbox.next_seq;
    outbox.next_seq += 1;
    seq
}

/// An event, stored with the job's batch and published once that is durable.
/// `car` locates the CAR of repo blocks inside the frame, when it carries one.
pub struct NewEvent<'a> {
    pub seq: i64,
    pub did: &'a str,
    pub kind: Kind,
    pub frame: Vec<u8>,
    pub car: Option<std::ops::Range<usize>>,
    pub rev: u64,
}

pub fn append(outbox: &mut Outbox, event: NewEvent) {
    let frame = Arc::new(event.frame);
    outbox.changes.push(Change::Event {
        seq: event.seq,
        did: event.did.to_owned(),
        kind: event.kind as u8,
        frame: frame.clone(),
        car: event.car,
        rev: event.rev,
    });
    let live = if frame.len() <= super::writer::LIVE_FRAME_MAX {
        frame.to_vec()
    } else {
        Vec::new()
    };
    outbox.events.push(Arc::new(SeqEvent {
        seq: event.seq,
        frame: live,
    }));
}

/// Events after `cursor`, oldest first, at most `limit`. Events of accounts deleted
/// since are left out, except the `#account` event that says so.
pub fn after(
    log: &RepoLog,
    conn: &Connection,
    cursor: i64,
    limit: usize,
) -> Result<Vec<SeqEvent>, StorageError> {
    let mut out = Vec::new();
    let mut exists: HashMap<String, bool> = HashMap::new();
    for row in log.event_rows_after(cursor) {
        for StoredEvent {
            seq,
            did,
            kind,
            frame,
        } in log.events_in(conn, row, cursor)?
        {
            if out.len() == limit {
                return Ok(out);
            }
            let present = match exists.get(&did) {
                Some(p) => *p,
                None => {
                    let p = super::accounts::by_did(conn, &did)?.is_some();
                    exists.insert(did, p);
                    p
                }
            };
            if present || kind == Kind::Account as u8 {
                out.push(SeqEvent { seq, frame });
            }
        }
    }
    Ok(out)
}
