//! Bounds on the waiting browsers' event streams: a few per session, a maximum lifetime, and
//! an end on shutdown. Each ends with a `reconnect` event; the wait page then asks by polling,
//! which any node answers.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Mutex;
use std::time::Duration;

use axum::response::sse::Event;
use futures_util::stream::{self, Stream, StreamExt};

use crate::state::AppState;

/// Open event streams per session id.
#[derive(Default)]
pub struct StreamCounts(Mutex<HashMap<String, usize>>);

/// One open stream, counted until dropped.
pub struct Slot {
    state: AppState,
    key: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.state.metrics.event_stream_closed();
        let mut counts = self
            .state
            .event_streams
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = counts.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

/// A slot for one more stream of `session_key`, or `None` when it holds its share already.
pub fn open(state: &AppState, session_key: String) -> Option<Slot> {
    let mut counts = state
        .event_streams
        .0
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let n = counts.entry(session_key.clone()).or_insert(0);
    if *n >= state.config.limits.event_streams_per_session {
        return None;
    }
    *n += 1;
    state.metrics.event_stream_opened();
    Some(Slot {
        state: state.clone(),
        key: session_key,
    })
}

fn reconnect() -> Event {
    Event::default()
        .event("reconnect")
        .retry(Duration::from_secs(1))
        .data("")
}

/// `inner`, ended with a `reconnect` event at the lifetime limit or when the server stops.
pub fn bounded<S>(slot: Slot, inner: S) -> impl Stream<Item = Result<Event, Infallible>> + Send
where
    S: Stream<Item = Result<Event, Infallible>> + Send + 'static,
{
    let lifetime = Duration::from_secs(slot.state.config.limits.event_stream_max_seconds);
    let deadline = tokio::time::Instant::now() + lifetime;
    let stopping = slot.state.stopping.clone();
    let inner = Box::pin(inner);
    stream::unfold(Some((inner, stopping, slot)), move |open| async move {
        let (mut inner, mut stopping, slot) = open?;
        if *stopping.borrow() {
            return Some((Ok(reconnect()), None));
        }
        tokio::select! {
            item = inner.next() => item.map(|item| (item, Some((inner, stopping, slot)))),
            _ = tokio::time::sleep_until(deadline) => Some((Ok(reconnect()), None)),
            _ = stopping.changed() => Some((Ok(reconnect()), None)),
        }
    })
}
