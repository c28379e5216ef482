//! Federation over `com.atproto.sync.subscribeRepos` (the firehose, sync v1.1), and the
//! relays that follow it.
//!
//! Write jobs sequence their events inside their own transaction
//! (`storage::emit`, as `storage::frames`); [`firehose`] serves them to subscribers:
//! replay from the log after a cursor, then the live feed the writer publishes after
//! each durable commit, without gaps or duplicates, cutting off consumers that fall too
//! far behind. [`relays`] asks relays to crawl us and watches that they do.

pub(crate) mod firehose;
pub(crate) mod relays;
