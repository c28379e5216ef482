//! Serving `com.atproto.sync.subscribeRepos` over WebSocket.
//!
//! A subscriber first registers for live events, then replays the log after its cursor
//! (in pages, so a long backlog costs little memory), then follows the live feed,
//! skipping what the replay already sent: no gap, no duplicate. The live feed is a
//! bounded broadcast buffer; a consumer that falls more than that far behind gets a
//! `ConsumerTooSlow` error frame and is disconnected, so memory stays bounded whatever
//! consumers do. Big frames are not in that buffer (see `SeqEvent`): when one comes
//! by, the subscriber reads that event from the log.

use crate::error::XrpcError;
use crate::pds::Ctx;
use crate::storage::events;
use crate::storage::frames::{error_frame, info_frame};
use crate::storage::writer::SeqEvent;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use futures_util::SinkExt;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;

/// Events read from the log per page while replaying.
const REPLAY_PAGE: usize = 500;

/// `GET /xrpc/com.atproto.sync.subscribeRepos[?cursor=N]`
pub(crate) async fn subscribe_repos(
    State(ctx): State<Ctx>,
    RawQuery(query): RawQuery,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let params = crate::http::Params::parse(query.as_deref());
    let cursor = match params.get("cursor").map(str::parse::<i64>) {
        None => None,
        Some(Ok(c)) if c >= 0 => Some(c),
        Some(_) => {
            return XrpcError::invalid_request("cursor must be a non-negative integer")
                .into_response()
        }
    };
    let Ok(ws) = ws else {
        return XrpcError::invalid_request(
            "subscribeRepos is a WebSocket endpoint: connect with ws:// or wss://",
        )
        .into_response();
    };
    ws.max_message_size(64 * 1024)
        .on_upgrade(move |socket| async move {
            if let Err(e) = stream(ctx, socket, cursor).await {
                tracing::debug!("firehose subscriber left: {e}");
            }
        })
}

async fn send(socket: &mut WebSocket, frame: Vec<u8>) -> Result<(), axum::Error> {
    socket.send(Message::Binary(frame.into())).await
}

/// Sends a last error frame, then closes with the full WebSocket handshake: waiting for
/// the client's close (briefly) lets it read everything sent before, instead of a TCP
/// reset throwing its unread frames away.
async fn fail(socket: &mut WebSocket, error: &str, message: &str) -> Result<(), axum::Error> {
    send(socket, error_frame(error, message)).await?;
    socket.send(Message::Close(None)).await?;
    let deadline = tokio::time::sleep(Duration::from_secs(30));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            _ = &mut deadline => return Ok(()),
            msg = socket.recv() => match msg {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return Ok(()),
                Some(Ok(_)) => {}
            },
        }
    }
}

async fn stream(ctx: Ctx, mut socket: WebSocket, cursor: Option<i64>) -> Result<(), axum::Error> {
    let mut live = ctx.storage.writer.subscribe();
    let mut last = 0i64;
    if let Some(cursor) = cursor {
        let (oldest, newest) = ctx.storage.log.seq_bounds().unwrap_or((1, 0));
        if cursor > newest {
            send(
                &mut socket,
                error_frame("FutureCursor", "Cursor in the future."),
            )
            .await?;
            return socket.close().await;
        }
        if cursor + 1 < oldest {
            send(
                &mut socket,
                info_frame(
                    "OutdatedCursor",
                    "Requested cursor exceeded limit. Possibly missing events",
                ),
            )
            .await?;
        }
        last = cursor;
        if let Err(message) = replay(&ctx, &mut socket, &mut last, i64::MAX).await? {
            return fail(&mut socket, "InternalServerError", &message).await;
        }
    }
    let mut ping = tokio::time::interval(Duration::from_secs(30));
    loop {
        tokio::select! {
            event = live.recv() => match event {
                Ok(event) if event.seq <= last => {}
                Ok(event) if event.in_log_only() => {
                    // A big frame: this one event, from the log.
                    last = last.max(event.seq - 1);
                    if let Err(message) = replay(&ctx, &mut socket, &mut last, event.seq).await? {
                        return fail(&mut socket, "InternalServerError", &message).await;
                    }
                    last = event.seq;
                }
                Ok(event) => {
                    last = event.seq;
                    send(&mut socket, event.frame.clone()).await?;
                }
                Err(RecvError::Lagged(_)) => {
                    return fail(&mut socket, "ConsumerTooSlow", "Stream consumer too slow").await;
                }
                Err(RecvError::Closed) => return socket.close().await,
            },
            incoming = socket.recv() => match incoming {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return Ok(()),
                Some(Ok(_)) => {}
            },
            _ = ping.tick() => socket.send(Message::Ping(Vec::new().into())).await?,
        }
    }
}

/// Sends the log's events after `*last` and up to `until`, page by page (so a long
/// backlog costs little memory), moving `*last` along; a storage failure comes back as
/// its message.
async fn replay(
    ctx: &Ctx,
    socket: &mut WebSocket,
    last: &mut i64,
    until: i64,
) -> Result<Result<(), String>, axum::Error> {
    while *last < until {
        let (log, from) = (ctx.storage.log.clone(), *last);
        let limit = REPLAY_PAGE.min(usize::try_from(until - from).unwrap_or(usize::MAX));
        let page = ctx
            .storage
            .read(move |conn| Ok::<_, XrpcError>(events::after(&log, conn, from, limit)?))
            .await;
        let page: Vec<SeqEvent> = match page {
            Ok(p) => p,
            Err(e) => return Ok(Err(e.message)),
        };
        let done = page.len() < limit;
        for event in page.into_iter().take_while(|e| e.seq <= until) {
            *last = event.seq;
            send(socket, event.frame).await?;
        }
        // The end of the log, or of what was asked for (the next event is past `until`,
        // or the one asked for was left out: its account is gone).
        if done || *last == from {
            break;
        }
    }
    Ok(Ok(()))
}

/// Hourly: compacts the repo log, which drops events older than the backfill window
/// and reclaims the space of dead blocks (see `storage::log`).
pub(crate) async fn compact_log(ctx: Ctx) {
    loop {
        let window_ms = ctx.config.firehose_backfill_hours as i64 * 3600 * 1000;
        let before = chrono::Utc::now().timestamp_millis() - window_ms;
        let mut reclaimed = 0;
        loop {
            match ctx.storage.writer.compact(before).await {
                Ok(0) => break,
                Ok(n) => reclaimed += n,
                Err(e) => {
                    tracing::warn!("compacting the repo log failed: {e}");
                    break;
                }
            }
        }
        if reclaimed > 0 {
            tracing::info!("repo log compacted: {reclaimed} bytes reclaimed");
        }
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
}
