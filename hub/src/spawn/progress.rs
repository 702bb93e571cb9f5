//! Progress events of one spawn (hub-protocol §1.5): what the `/progress` event stream sends.
//!
//! A spawn publishes `{"progress": 0, "message": "Server requested"}`, then the spawner's own
//! events, then exactly one terminal event: ready (`"ready": true`) or failed
//! (`"failed": true`). Every event is kept (up to [`REPLAY_LIMIT`]) so a client that starts
//! listening late, or reconnects, first gets everything it missed, then the live events; the
//! replay and the subscription are taken under one lock, so nothing is seen twice or lost.

use std::sync::{Mutex, MutexGuard, PoisonError};

use hub_plugin::ProgressEvent;
use serde_json::{Map, Value, json};
use tokio::sync::broadcast;

/// Events kept for late listeners. Beyond it the oldest events after the first are dropped:
/// a spawner that chats this much has said everything of interest recently.
pub const REPLAY_LIMIT: usize = 500;

/// Live events buffered per listener; a listener that falls further behind skips events.
const CHANNEL_CAPACITY: usize = 128;

/// The progress of one spawn.
#[derive(Debug)]
pub struct Progress {
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    events: Vec<Value>,
    /// `None` once the terminal event was published.
    live: Option<broadcast::Sender<Value>>,
}

/// What a listener gets: the events so far, and the live ones to come (`None` when the spawn
/// already ended; the terminal event is then the last of `past`).
#[derive(Debug)]
pub struct Subscription {
    /// Events published before the subscription, oldest first.
    pub past: Vec<Value>,
    /// Events published after it.
    pub live: Option<broadcast::Receiver<Value>>,
}

impl Default for Progress {
    fn default() -> Self {
        Self::new()
    }
}

impl Progress {
    /// A spawn with no events yet.
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(CHANNEL_CAPACITY);
        Progress {
            inner: Mutex::new(Inner {
                events: Vec::new(),
                live: Some(tx),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Publishes an event; ignored after the terminal event.
    pub fn publish(&self, event: Value) {
        let mut inner = self.lock();
        let Some(tx) = inner.live.clone() else {
            return;
        };
        if inner.events.len() >= REPLAY_LIMIT {
            inner.events.remove(1);
        }
        inner.events.push(event.clone());
        // No receivers is fine: nobody is listening right now.
        let _ = tx.send(event);
    }

    /// Publishes the terminal event and closes the live channel.
    pub fn finish(&self, event: Value) {
        self.publish(event);
        self.lock().live = None;
    }

    /// Whether the terminal event was published.
    pub fn is_finished(&self) -> bool {
        self.lock().live.is_none()
    }

    /// The events so far plus a receiver for the rest.
    pub fn subscribe(&self) -> Subscription {
        let inner = self.lock();
        Subscription {
            past: inner.events.clone(),
            live: inner.live.as_ref().map(broadcast::Sender::subscribe),
        }
    }

    /// A copy of the events so far.
    pub fn events(&self) -> Vec<Value> {
        self.lock().events.clone()
    }
}

/// Whether an event ends the stream (`ready` or `failed`).
pub fn is_terminal(event: &Value) -> bool {
    event.get("ready") == Some(&Value::Bool(true))
        || event.get("failed") == Some(&Value::Bool(true))
}

/// The first event of every spawn.
pub fn requested_event() -> Value {
    json!({"progress": 0, "message": "Server requested"})
}

/// A spawner's event as the stream sends it. Spawners cannot end the stream themselves: the
/// hub alone says when the server is ready.
pub fn spawner_event(event: &ProgressEvent) -> Value {
    let mut m = Map::new();
    if let Some(p) = event.progress {
        m.insert("progress".into(), json!(p.min(100)));
    }
    m.insert("message".into(), json!(event.message));
    if let Some(html) = &event.html_message {
        m.insert("html_message".into(), json!(html));
    }
    Value::Object(m)
}

/// The event of a ready server at `url` (its prefix, e.g. `/user/alice/`).
pub fn ready_event(url: &str) -> Value {
    let escaped = html_escape(url);
    json!({
        "progress": 100,
        "ready": true,
        "message": format!("Server ready at {url}"),
        "html_message": format!("Server ready at <a href=\"{escaped}\">{escaped}</a>"),
        "url": url,
    })
}

/// The event of a failed spawn; `message` is the whole text (e.g. `Spawn failed: ...`).
pub fn failed_event(message: &str) -> Value {
    json!({"progress": 100, "failed": true, "message": message})
}

/// Escapes text for HTML.
pub fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn late_listeners_get_the_past_then_the_rest() {
        let p = Progress::new();
        p.publish(requested_event());
        p.publish(json!({"progress": 50, "message": "half"}));
        let mut sub = p.subscribe();
        assert_eq!(sub.past.len(), 2);
        p.finish(ready_event("/user/a/"));
        let live = sub.live.as_mut().unwrap();
        let ev = live.try_recv().unwrap();
        assert!(is_terminal(&ev));
        assert!(p.is_finished());
        // After the end: everything as past, nothing live; later publishes are ignored.
        p.publish(json!({"message": "late"}));
        let sub = p.subscribe();
        assert_eq!(sub.past.len(), 3);
        assert!(sub.live.is_none());
        assert!(is_terminal(sub.past.last().unwrap()));
    }

    #[test]
    fn replay_is_bounded_and_keeps_the_first_event() {
        let p = Progress::new();
        p.publish(requested_event());
        for i in 0..REPLAY_LIMIT + 10 {
            p.publish(json!({"message": i.to_string()}));
        }
        let events = p.events();
        assert_eq!(events.len(), REPLAY_LIMIT);
        assert_eq!(events[0], requested_event());
        assert_eq!(
            events.last().unwrap()["message"],
            (REPLAY_LIMIT + 9).to_string()
        );
    }

    #[test]
    fn event_shapes() {
        let ready = ready_event("/user/a&b/");
        assert_eq!(ready["message"], "Server ready at /user/a&b/");
        assert_eq!(
            ready["html_message"],
            "Server ready at <a href=\"/user/a&amp;b/\">/user/a&amp;b/</a>"
        );
        assert_eq!(ready["url"], "/user/a&b/");
        let failed = failed_event("Spawn failed: no");
        assert!(is_terminal(&failed));
        let ev = spawner_event(&ProgressEvent {
            progress: Some(200),
            message: "m".into(),
            html_message: None,
        });
        assert_eq!(ev, json!({"progress": 100, "message": "m"}));
    }
}
