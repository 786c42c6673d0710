//! What a request does about a sleeping app, and what the edge answers for it: a
//! no-wake request (`no_wake`) neither wakes the app nor keeps it awake, and gets the
//! sleeping answer; a browser's navigation (`wake_page`) begins the wake and gets the
//! page where the app asks; everything else wakes the app and waits.

use super::{ProxyBody, no_wake, wake_page};
use crate::config::{NoWakeConfig, WakeConfig};
use crate::lifecycle::{Manner, OnSleep};
use crate::machines::spec::RulesView;
use crate::metrics::Metrics;
use http::{Request, Response};

/// The operator's side of it: defaults, the monitors' list, the page.
pub struct Sleeping {
    pub wake: WakeConfig,
    pub no_wake: NoWakeConfig,
    page: wake_page::WakePage,
}

impl Sleeping {
    pub fn new(wake: WakeConfig, no_wake: NoWakeConfig, template: Option<String>) -> Sleeping {
        Sleeping {
            wake,
            no_wake,
            page: wake_page::WakePage::new(template),
        }
    }

    /// How this request treats a sleeping machine, by the app's `rules` for the port.
    pub fn manner<B>(&self, rules: Option<RulesView<'_>>, req: &Request<B>) -> Manner {
        let no_wake = rules.and_then(|r| r.no_wake());
        let (method, headers) = (req.method(), req.headers());
        if no_wake::matches(no_wake, &self.no_wake, method, req.uri().path(), headers) {
            return Manner {
                on_sleep: OnSleep::Leave,
                quiet: true,
            };
        }
        let page = rules.and_then(|r| r.wake_page()).unwrap_or(self.wake.page);
        let on_sleep = match page && wake_page::is_navigation(method, headers) {
            true => OnSleep::Begin,
            false => OnSleep::Wake,
        };
        Manner {
            on_sleep,
            quiet: false,
        }
    }

    /// The edge's own answer while the app sleeps: the wake page (its wake begun), or
    /// the sleeping answer to a no-wake request (no body for HEAD).
    pub fn answer(
        &self,
        metrics: &Metrics,
        app: &str,
        rules: Option<RulesView<'_>>,
        waking: bool,
        head: bool,
    ) -> Response<ProxyBody> {
        let retry = self.wake.retry_after_secs;
        if waking {
            Metrics::count(&metrics.edge_answers, app, "wake_page");
            return self.page.response(app, retry);
        }
        Metrics::count(&metrics.edge_answers, app, "no_wake");
        let status = rules.and_then(|r| r.no_wake()).and_then(|r| r.status);
        no_wake::answer(app, status, &self.no_wake, retry, head)
    }

    /// Whether an app with these rules is woken at the TLS ClientHello.
    pub fn wakes_early(&self, rules: Option<RulesView<'_>>) -> bool {
        rules
            .and_then(|r| r.wake_early())
            .unwrap_or(self.wake.early)
    }
}
