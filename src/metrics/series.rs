//! The request series' handles by app, found without building labels: once a request's
//! app, status class and region have been seen, counting it allocates nothing and
//! takes no family lock (the families behind the handles are what `/metrics` renders;
//! a handle shares its series' value).

use super::{AppLabels, Histograms, RequestLabels};
use dashmap::DashMap;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;

/// Per app: its request-duration histogram and its counters.
#[derive(Default)]
pub struct RequestSeries(DashMap<String, AppSeries>);

struct AppSeries {
    duration: Histogram,
    /// (status class, region) and its counter: a handful per app.
    counts: Vec<(u16, String, Counter)>,
}

impl AppSeries {
    fn counter(&self, class: u16, region: &str) -> Option<&Counter> {
        self.counts
            .iter()
            .find(|(c, r, _)| *c == class && r == region)
            .map(|(_, _, counter)| counter)
    }
}

/// The families a request is recorded in.
pub struct Families<'a> {
    pub requests: &'a Family<RequestLabels, Counter>,
    pub durations: &'a Histograms<AppLabels>,
}

impl RequestSeries {
    /// Counts one request of `app` answered with `status` from `region` and observes
    /// how long it took; the series are made in `families` the first time.
    pub fn record(&self, families: Families<'_>, app: &str, status: u16, region: &str, secs: f64) {
        let class = status / 100;
        if let Some(series) = self.0.get(app)
            && let Some(counter) = series.counter(class, region)
        {
            counter.inc();
            series.duration.observe(secs);
            return;
        }
        // The read guard above is gone: the shard's write lock is free to take.
        let mut series = self.0.entry(app.to_string()).or_insert_with(|| {
            let labels = AppLabels {
                app: app.to_string(),
            };
            AppSeries {
                duration: families.durations.get_or_create(&labels).clone(),
                counts: Vec::new(),
            }
        });
        if series.counter(class, region).is_none() {
            let labels = RequestLabels {
                app: app.to_string(),
                status: format!("{class}xx"),
                region: region.to_string(),
            };
            let counter = families.requests.get_or_create(&labels).clone();
            series.counts.push((class, region.to_string(), counter));
        }
        if let Some(counter) = series.counter(class, region) {
            counter.inc();
        }
        series.duration.observe(secs);
    }
}

#[cfg(test)]
mod tests {
    use super::super::Metrics;
    use super::*;

    fn count(metrics: &Metrics, app: &str, status: &str, region: &str) -> u64 {
        let labels = RequestLabels {
            app: app.into(),
            status: status.into(),
            region: region.into(),
        };
        metrics.requests.get_or_create(&labels).get()
    }

    /// Requests are counted in the series of their app, status class and region, the
    /// first of each as well as the ones after it; the duration series is the app's.
    #[test]
    fn each_request_counts_in_its_own_series() {
        let metrics = Metrics::new();
        let took = std::time::Duration::from_millis(3);
        for (app, status, region) in [
            ("a", 200, "ams"),
            ("a", 204, "ams"),
            ("a", 503, ""),
            ("a", 200, "syd"),
            ("b", 200, "ams"),
            ("a", 200, "ams"),
        ] {
            metrics.request(app, status, region, took);
        }
        assert_eq!(count(&metrics, "a", "2xx", "ams"), 3);
        assert_eq!(count(&metrics, "a", "5xx", ""), 1);
        assert_eq!(count(&metrics, "a", "2xx", "syd"), 1);
        assert_eq!(count(&metrics, "b", "2xx", "ams"), 1);
        assert_eq!(count(&metrics, "b", "2xx", "syd"), 0);
        let text = metrics.render([]);
        let sum = |app: &str| {
            let line = format!("edgewake_request_duration_seconds_count{{app=\"{app}\"}} ");
            text.lines()
                .find_map(|l| l.strip_prefix(line.as_str()))
                .unwrap_or_else(|| panic!("no {line} in {text}"))
                .to_string()
        };
        assert_eq!(sum("a"), "5");
        assert_eq!(sum("b"), "1");
    }
}
