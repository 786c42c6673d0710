//! The wake page: a browser navigating to a sleeping app (GET, `Accept` preferring
//! `text/html`, not a WebSocket, not fetch/XHR) gets, where the app asks for it, a small
//! page saying the app is starting, which reloads itself once the app is up; other
//! clients are held until the machine answers. The page is a template the operator can
//! replace (`wake.page_template`): `{{app}}` and `{{retry_after}}` are filled in.

use super::ProxyBody;
use super::no_wake::EdgeAnswer;
use bytes::Bytes;
use http::{HeaderMap, Method, Response, StatusCode};

/// The built-in page. Its script asks for the same URL with `fetch` (which the edge
/// holds until the machine answers, since fetch is not a navigation) and reloads then;
/// without scripts, the meta refresh reloads every `retry_after` seconds.
pub const DEFAULT_TEMPLATE: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="{{retry_after}}">
<title>{{app}} is starting</title>
<style>
body{font-family:system-ui,sans-serif;display:flex;min-height:100vh;margin:0;align-items:center;justify-content:center;background:#f6f6f4;color:#222}
main{text-align:center}
.dot{display:inline-block;width:.6em;height:.6em;margin:0 .2em;border-radius:50%;background:#888;animation:p 1s infinite alternate}
.dot:nth-child(2){animation-delay:.3s}.dot:nth-child(3){animation-delay:.6s}
@keyframes p{to{opacity:.2}}
</style>
</head>
<body>
<main>
<h1>{{app}} is starting</h1>
<p><span class="dot"></span><span class="dot"></span><span class="dot"></span></p>
<p>This page reloads by itself when it is up.</p>
</main>
<script>
fetch(location.href, {cache: "no-store", credentials: "same-origin"})
  .then(function () { location.reload(); })
  .catch(function () { setTimeout(function () { location.reload(); }, {{retry_after}} * 1000); });
</script>
</body>
</html>
"#;

/// Whether a request is a browser's navigation that may get the page.
pub fn is_navigation(method: &Method, headers: &HeaderMap) -> bool {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let fetch_mode = header("sec-fetch-mode");
    *method == Method::GET
        && !headers.contains_key(http::header::UPGRADE)
        && fetch_mode.is_none_or(|m| m.eq_ignore_ascii_case("navigate"))
        && !header("x-requested-with").is_some_and(|v| v.eq_ignore_ascii_case("xmlhttprequest"))
        && prefers_html(header("accept").unwrap_or(""))
}

/// Whether `text/html` has the highest quality among the types `accept` lists (a
/// browser's `text/html,…,*/*;q=0.8` does; `*/*` or `application/json` do not).
fn prefers_html(accept: &str) -> bool {
    let mut html = None;
    let mut best_other: f32 = 0.0;
    for item in accept.split(',') {
        let mut parts = item.split(';');
        let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        if media == "text/html" {
            html = Some(q);
        } else if media != "application/xhtml+xml" {
            best_other = best_other.max(q);
        }
    }
    html.is_some_and(|q| q > 0.0 && q >= best_other)
}

/// The page, made once from the template.
#[derive(Debug, Clone)]
pub struct WakePage {
    template: String,
}

impl WakePage {
    pub fn new(template: Option<String>) -> WakePage {
        WakePage {
            template: template.unwrap_or_else(|| DEFAULT_TEMPLATE.to_string()),
        }
    }

    /// 503 with `Retry-After`, never cached, the page filled in for `app`.
    pub fn response(&self, app: &str, retry_after_secs: u32) -> Response<ProxyBody> {
        let html = self
            .template
            .replace("{{app}}", &escape(app))
            .replace("{{retry_after}}", &retry_after_secs.to_string());
        let waking = EdgeAnswer {
            status: StatusCode::SERVICE_UNAVAILABLE,
            content_type: "text/html; charset=utf-8",
            asleep: "waking",
            retry_after_secs,
        };
        waking.response(Bytes::from(html))
    }
}

/// The operator's page, if the config names one (checked readable at load; a file
/// gone since falls back to the built-in page, saying so).
pub fn read_template(wake: &crate::config::WakeConfig) -> Option<String> {
    let path = wake.page_template.as_ref()?;
    match std::fs::read_to_string(path) {
        Ok(template) => Some(template),
        Err(e) => {
            tracing::error!("wake page {}: {e}; using the built-in page", path.display());
            None
        }
    }
}

/// App names are DNS labels already; escaped anyway, since the page is HTML.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                http::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    /// A browser's navigation gets the page; curl, JSON clients, fetch, XHR and
    /// WebSockets are held instead.
    #[test]
    fn browsers_get_the_page() {
        let chrome = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,*/*;q=0.8";
        assert!(is_navigation(&Method::GET, &with(&[("accept", chrome)])));
        assert!(is_navigation(
            &Method::GET,
            &with(&[("accept", chrome), ("sec-fetch-mode", "navigate")])
        ));
        assert!(!is_navigation(&Method::POST, &with(&[("accept", chrome)])));
        assert!(!is_navigation(&Method::GET, &with(&[("accept", "*/*")])));
        assert!(!is_navigation(
            &Method::GET,
            &with(&[("accept", "application/json")])
        ));
        assert!(!is_navigation(
            &Method::GET,
            &with(&[("accept", chrome), ("sec-fetch-mode", "cors")])
        ));
        assert!(!is_navigation(
            &Method::GET,
            &with(&[("accept", chrome), ("x-requested-with", "XMLHttpRequest")])
        ));
        assert!(!is_navigation(
            &Method::GET,
            &with(&[("accept", chrome), ("upgrade", "websocket")])
        ));
        assert!(!is_navigation(
            &Method::GET,
            &with(&[("accept", "application/json, text/html;q=0.5")])
        ));
    }

    /// The template gets the app and the retry delay; the answer is a 503 not cached.
    #[test]
    fn template_is_filled() {
        let page = WakePage::new(Some("<p>{{app}} in {{retry_after}}s</p>".into()));
        let response = page.response("shop", 3);
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()["retry-after"], "3");
        assert_eq!(response.headers()["cache-control"], "no-store");
    }
}
