//! The log's format: text for people (colour only on a terminal, and not with
//! `NO_COLOR`), or one JSON object per line for machines (`log.format = "json"`).

use crate::config::LogFormat;
use std::io::IsTerminal;
use tracing::Subscriber;
use tracing_subscriber::Layer;
use tracing_subscriber::registry::LookupSpan;

/// The layer that writes the log to stderr in `format`.
pub fn layer<S>(format: LogFormat) -> Box<dyn Layer<S> + Send + Sync>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let base = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    match format {
        LogFormat::Text => base.with_ansi(colours()).boxed(),
        LogFormat::Json => base
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .boxed(),
    }
}

/// Colour codes only for a person at a terminal.
fn colours() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}
