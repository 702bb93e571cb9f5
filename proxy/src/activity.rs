//! Recording route activity from proxied traffic, as configurable-http-proxy does:
//! every chunk of request body, the end of every response with status below 300, and every
//! chunk a websocket client sends. Server-to-client websocket traffic, responses still
//! streaming, and requests that matched no route record nothing.

use std::sync::Arc;
use std::time::Instant;

use http_forward::body::BodyTap;

use crate::metrics::Metrics;
use crate::routes::Route;
use crate::upstream::Lease;

/// Touches a route and times it for the `last_activity_updating` metric.
#[derive(Debug, Clone)]
pub struct Activity {
    route: Arc<Route>,
    metrics: Arc<Metrics>,
}

impl Activity {
    /// Activity on `route`.
    pub fn new(route: Arc<Route>, metrics: Arc<Metrics>) -> Self {
        Self { route, metrics }
    }

    /// Records activity now.
    pub fn touch(&self) {
        let start = Instant::now();
        self.route.touch();
        self.metrics.last_activity_updating.observe(start.elapsed());
    }
}

/// Request bodies: every data chunk counts.
#[derive(Debug)]
pub struct RequestActivity(pub Activity);

impl BodyTap for RequestActivity {
    fn data(&mut self) {
        self.0.touch();
    }
}

/// Response bodies: the end of a successful (< 300) response counts. The end also gives the
/// connection it came on back to its route.
#[derive(Debug)]
pub struct ResponseActivity {
    pub activity: Option<Activity>,
    pub lease: Option<Lease>,
}

impl BodyTap for ResponseActivity {
    fn end(&mut self) {
        if let Some(a) = &self.activity {
            a.touch();
        }
        if let Some(lease) = &mut self.lease {
            lease.release();
        }
    }
}
