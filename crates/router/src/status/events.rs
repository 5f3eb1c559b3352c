//! `GET /api/self-test/events`: the self-test report as a server-sent event stream, one `report`
//! event per change (start, each log line, the end). The stream ends once the report is final,
//! so a reader (and a fuzzer) is never held; a page waiting for the next run reconnects after
//! the `retry` delay.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::get;
use axum::Router;
use futures_util::Stream;

use super::state::SharedStatus;

/// How soon a page reconnects after the stream ended (it waits for a run to start).
const RETRY: Duration = Duration::from_millis(500);

pub fn routes(status: SharedStatus) -> Router {
    Router::new().route("/api/self-test/events", get(self_test_events)).with_state(status)
}

async fn self_test_events(
    State(status): State<SharedStatus>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let updates = status.self_test_updates();
    // (receiver, first event sent, the last one sent was final)
    let stream =
        futures_util::stream::unfold((updates, false, false), |(mut rx, started, done)| async move {
            if done || (started && rx.changed().await.is_err()) {
                return None;
            }
            let report = rx.borrow_and_update().clone();
            let running = report.as_ref().is_some_and(|r| r.status == "running");
            let event = match &report {
                Some(r) => Event::default().event("report").json_data(r).unwrap_or_default(),
                None => Event::default().event("none").data("{}"),
            };
            Some((Ok(event.retry(RETRY)), (rx, true, !running)))
        });
    Sse::new(stream).keep_alive(KeepAlive::default())
}
