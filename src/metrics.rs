//! What edgewake counts for the operator, in Prometheus' text format at `GET /metrics`
//! on the API listener: requests (by app, status class and region) and their duration,
//! the time requests waited for a wake (the cold-start histogram), wakes and stops by
//! reason, machines by state, requests in flight and queued, and the errors of the
//! backhaul and the drivers. One `Metrics` per edgewake (tests run several in one
//! process), held by the `Supervisor` and shared by everyone who counts.
//!
//! Label values are apps, regions, states and fixed reason words: apps and regions are
//! the operator's, so no client can grow the number of series.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::Mutex;
use std::time::Duration;

/// The `Content-Type` of what `render` writes.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Bucket bounds (seconds) of the request duration: 1 ms to ~33 s, doubling.
fn request_buckets() -> Histogram {
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.001, 2.0, 16,
    ))
}

/// Bucket bounds (seconds) of the wait for a wake: boots take tens of ms to a minute.
const COLD_START_BUCKETS: [f64; 13] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

fn cold_start_buckets() -> Histogram {
    Histogram::new(COLD_START_BUCKETS)
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub app: String,
    /// `2xx` … `5xx`.
    pub status: String,
    /// The region of the machine that answered; empty when none did.
    pub region: String,
}

impl RequestLabels {
    fn new(app: &str, status_class: &str, region: &str) -> RequestLabels {
        RequestLabels {
            app: app.to_string(),
            status: status_class.to_string(),
            region: region.to_string(),
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AppLabels {
    pub app: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub app: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    pub operation: String,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// A request's status class, as its label. Statuses above 599, which HTTP does not
/// define (hyper passes a machine's up to 999), count as `5xx`: the label has five
/// values, whatever machines answer.
fn status_class(status: u16) -> &'static str {
    match status / 100 {
        1 => "1xx",
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        _ => "5xx",
    }
}

/// The series a connection's last request was counted in, kept for its next: a
/// kept-alive connection's requests mostly go to one app and region with one status
/// class, and finding the series again costs label strings and a hashed lookup in
/// each family. Series are never removed, so a kept one stays the one rendered.
#[derive(Default)]
pub struct RecentSeries {
    last: Option<(RequestLabels, Counter, Histogram)>,
}

impl RecentSeries {
    /// Records one finished request (see `Metrics::request`).
    pub fn request(
        &mut self,
        metrics: &Metrics,
        app: &str,
        status: u16,
        region: &str,
        took: Duration,
    ) {
        let class = status_class(status);
        let kept = self.last.take().filter(|(labels, ..)| {
            labels.app == app && labels.status == class && labels.region == region
        });
        let (labels, count, duration) = kept.unwrap_or_else(|| {
            let labels = RequestLabels::new(app, class, region);
            let (count, duration) = metrics.request_series(&labels);
            (labels, count, duration)
        });
        count.inc();
        duration.observe(took.as_secs_f64());
        self.last = Some((labels, count, duration));
    }
}

/// Every series edgewake keeps.
pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub request_duration: Histograms<AppLabels>,
    pub cold_start: Histograms<AppLabels>,
    pub wakes: Family<ReasonLabels, Counter>,
    pub wake_failures: Family<ReasonLabels, Counter>,
    pub stops: Family<ReasonLabels, Counter>,
    pub machines: Family<StateLabels, Gauge>,
    pub in_flight: Gauge,
    pub queued: Gauge,
    pub queue_rejections: Family<AppLabels, Counter>,
    pub edge_answers: Family<ReasonLabels, Counter>,
    pub replays: Family<ReasonLabels, Counter>,
    pub keep_awakes: Family<ReasonLabels, Counter>,
    pub backhaul_errors: Counter,
    pub driver_errors: Family<OperationLabels, Counter>,
    /// Held while the machine gauge is refilled and the text written, so two scrapes
    /// at once do not see each other's half-filled gauge.
    render: Mutex<()>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut metrics = Metrics {
            registry: Registry::with_prefix("edgewake"),
            requests: Family::default(),
            request_duration: Family::new_with_constructor(request_buckets),
            cold_start: Family::new_with_constructor(cold_start_buckets),
            wakes: Family::default(),
            wake_failures: Family::default(),
            stops: Family::default(),
            machines: Family::default(),
            in_flight: Gauge::default(),
            queued: Gauge::default(),
            queue_rejections: Family::default(),
            edge_answers: Family::default(),
            replays: Family::default(),
            keep_awakes: Family::default(),
            backhaul_errors: Counter::default(),
            driver_errors: Family::default(),
            render: Mutex::new(()),
        };
        metrics.register();
        metrics
    }

    fn register(&mut self) {
        let r = &mut self.registry;
        r.register(
            "requests",
            "Requests through the edge, by app, status class and the region that answered",
            self.requests.clone(),
        );
        r.register(
            "request_duration_seconds",
            "Time from a request's headers to its response's headers, by app",
            self.request_duration.clone(),
        );
        r.register(
            "cold_start_seconds",
            "Time a request waited for its machine to start (and pass its checks), by app",
            self.cold_start.clone(),
        );
        r.register(
            "wakes",
            "Machine starts, by app and reason (request, early, api, replay, restart)",
            self.wakes.clone(),
        );
        r.register(
            "wake_failures",
            "Starts that failed, by app and reason (exited, start_failed, timeout)",
            self.wake_failures.clone(),
        );
        r.register(
            "stops",
            "Machine stops, by app and reason (idle, api, exit, shutdown, update)",
            self.stops.clone(),
        );
        r.register("machines", "Machines by state", self.machines.clone());
        r.register(
            "in_flight_requests",
            "Requests the edge is serving now",
            self.in_flight.clone(),
        );
        r.register(
            "queued_requests",
            "Requests waiting for room on a full machine",
            self.queued.clone(),
        );
        r.register(
            "queue_rejections",
            "Requests refused because the app's queue was full or its wait ran out",
            self.queue_rejections.clone(),
        );
        r.register(
            "edge_answers",
            "Requests the edge answered itself while the app slept (wake_page, no_wake)",
            self.edge_answers.clone(),
        );
        r.register(
            "replays",
            "fly-replay answers, by app and outcome (replayed, too_many, body, no_target)",
            self.replays.clone(),
        );
        r.register(
            "keep_awakes",
            "Keep-awake signals from machines, by app and how (header, api)",
            self.keep_awakes.clone(),
        );
        r.register(
            "backhaul_errors",
            "Failures reaching a machine on another node",
            self.backhaul_errors.clone(),
        );
        r.register(
            "driver_errors",
            "Driver operations that failed (start, stop)",
            self.driver_errors.clone(),
        );
    }

    /// Counts one of the labelled events: `count(&m.wakes, app, "request")`.
    pub fn count(family: &Family<ReasonLabels, Counter>, app: &str, reason: &str) {
        family
            .get_or_create(&ReasonLabels {
                app: app.to_string(),
                reason: reason.to_string(),
            })
            .inc();
    }

    /// Records one finished request.
    pub fn request(&self, app: &str, status: u16, region: &str, took: Duration) {
        let labels = RequestLabels::new(app, status_class(status), region);
        let (count, duration) = self.request_series(&labels);
        count.inc();
        duration.observe(took.as_secs_f64());
    }

    /// The series a request of `labels` is counted in: its count and the app's
    /// durations.
    fn request_series(&self, labels: &RequestLabels) -> (Counter, Histogram) {
        let count = self.requests.get_or_create(labels).clone();
        let app = AppLabels {
            app: labels.app.clone(),
        };
        let duration = self.request_duration.get_or_create(&app).clone();
        (count, duration)
    }

    /// Records how long a request waited for its machine to wake.
    pub fn cold_start(&self, app: &str, waited: Duration) {
        self.cold_start
            .get_or_create(&AppLabels {
                app: app.to_string(),
            })
            .observe(waited.as_secs_f64());
    }

    pub fn queue_rejected(&self, app: &str) {
        self.queue_rejections
            .get_or_create(&AppLabels {
                app: app.to_string(),
            })
            .inc();
    }

    pub fn driver_error(&self, operation: &str) {
        self.driver_errors
            .get_or_create(&OperationLabels {
                operation: operation.to_string(),
            })
            .inc();
    }

    /// Writes every series as Prometheus text, the machine gauge first set from
    /// `states` (each machine's state word).
    pub fn render<'a>(&self, states: impl IntoIterator<Item = &'a str>) -> String {
        let _one_at_a_time = self.render.lock().unwrap_or_else(|p| p.into_inner());
        self.machines.clear();
        for state in states {
            let labels = StateLabels {
                state: state.to_string(),
            };
            self.machines.get_or_create(&labels).inc();
        }
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry);
        text
    }
}

/// A guard that counts a request in flight until dropped.
pub struct InFlightGauge<'a>(&'a Gauge);

impl<'a> InFlightGauge<'a> {
    pub fn enter(gauge: &'a Gauge) -> InFlightGauge<'a> {
        gauge.inc();
        InFlightGauge(gauge)
    }
}

impl Drop for InFlightGauge<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The text names each family with its type, counts what was recorded, and shows
    /// machines by the states given.
    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::new();
        m.request("shop", 503, "", Duration::from_millis(3));
        m.cold_start("shop", Duration::from_millis(420));
        Metrics::count(&m.wakes, "shop", "request");
        let text = m.render(["started", "stopped", "stopped"]);
        assert!(
            text.contains("# TYPE edgewake_requests_total counter"),
            "{text}"
        );
        assert!(
            text.contains(r#"edgewake_requests_total{app="shop",status="5xx",region=""} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"edgewake_cold_start_seconds_bucket{app="shop",le="0.5"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"edgewake_machines{state="stopped"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"edgewake_wakes_total{app="shop",reason="request"} 1"#),
            "{text}"
        );
    }

    /// A connection's requests are counted in the series of their own app, status
    /// class and region as these change, not in the one it kept from before.
    #[test]
    fn recent_series_follow_the_labels() {
        let m = Metrics::new();
        let mut recent = RecentSeries::default();
        let requests = [
            ("shop", 200, "ams"),
            ("shop", 204, "ams"),
            ("shop", 404, "ams"),
            ("blog", 200, "ams"),
            ("shop", 200, "syd"),
            ("shop", 200, "ams"),
            ("shop", 999, "ams"),
        ];
        for (app, status, region) in requests {
            recent.request(&m, app, status, region, Duration::from_millis(1));
        }
        let text = m.render([]);
        for series in [
            r#"edgewake_requests_total{app="shop",status="2xx",region="ams"} 3"#,
            r#"edgewake_requests_total{app="shop",status="4xx",region="ams"} 1"#,
            r#"edgewake_requests_total{app="shop",status="5xx",region="ams"} 1"#,
            r#"edgewake_requests_total{app="blog",status="2xx",region="ams"} 1"#,
            r#"edgewake_requests_total{app="shop",status="2xx",region="syd"} 1"#,
            r#"edgewake_request_duration_seconds_count{app="shop"} 6"#,
            r#"edgewake_request_duration_seconds_count{app="blog"} 1"#,
        ] {
            assert!(text.contains(series), "{series} in {text}");
        }
    }
}
