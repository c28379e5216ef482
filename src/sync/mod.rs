//! Federation over `com.atproto.sync.subscribeRepos` (the firehose, sync v1.1).
//!
//! [`frames`] builds the event frames that write jobs sequence into the event log
//! (`storage::events`) inside their own transaction; [`firehose`] serves them to
//! subscribers: replay from the log after a cursor, then the live feed the writer
//! publishes after each durable commit, without gaps or duplicates, cutting off
//! consumers that fall too far behind.

pub mod emit;
pub mod firehose;
pub mod frames;
pub mod relays;
