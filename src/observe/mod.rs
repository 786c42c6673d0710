//! What edgewake tells its operator, beside `/metrics`: the log's format (`format`: text
//! without colour off a terminal, or JSON lines), one line per wake and per stop with
//! its reason (`lifecycle`, counted in the metrics too), and the access log (`access`,
//! one line per proxied request, on with `log.access`).
//!
//! `RUST_LOG` picks what is logged (`info` by default; `edgewake::access=off` silences
//! the access log, `edgewake=debug` shows each proxy error).

pub mod access;
pub mod format;
pub mod lifecycle;
