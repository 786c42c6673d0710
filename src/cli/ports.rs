//! flyctl's `--port` syntax, `port[:machinePort][/protocol[:handler...]]`
//! (`443:8080/tcp:tls:http`), turned into a machine config's `services`. A bare port
//! other than 80 and 443 (`-p 8080`) is the machine's: the edge serves it on 80 (http)
//! and 443 (tls, http), as `fly launch`'s http service is; ports 80 and 443 given
//! without handlers get those same handlers.

use serde_json::{Value, json};

/// One `--port` flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSpec {
    pub port: u16,
    pub internal_port: u16,
    pub protocol: String,
    pub handlers: Vec<String>,
}

/// The edge's public ports and the handlers they get when none are given.
const WEB_PORTS: [(u16, &[&str]); 2] = [(80, &["http"]), (443, &["tls", "http"])];

/// A `--port` flag that does not parse, with the flag as given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--port `{text}`: {problem} (e.g. 443:8080/tcp:tls:http)")]
pub struct PortSpecError {
    pub text: String,
    pub problem: PortProblem,
}

/// Which part of a `--port` flag is wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PortProblem {
    #[error("bad public port")]
    PublicPort,
    #[error("bad machine port")]
    MachinePort,
    #[error("protocol must be tcp or udp")]
    Protocol,
}

impl PortSpec {
    /// One `--port` flag: one spec, or two for a bare machine port.
    pub fn parse_flag(text: &str) -> Result<Vec<PortSpec>, PortSpecError> {
        let bare = text.parse::<u16>().ok();
        match bare.filter(|p| WEB_PORTS.iter().all(|(web, _)| web != p)) {
            Some(internal_port) => Ok(WEB_PORTS
                .iter()
                .map(|(port, handlers)| PortSpec {
                    port: *port,
                    internal_port,
                    protocol: "tcp".into(),
                    handlers: handlers.iter().map(|h| h.to_string()).collect(),
                })
                .collect()),
            None => PortSpec::parse(text).map(|spec| vec![spec]),
        }
    }

    pub fn parse(text: &str) -> Result<PortSpec, PortSpecError> {
        let bad = |problem| PortSpecError {
            text: text.to_string(),
            problem,
        };
        let (ports, rest) = text.split_once('/').unwrap_or((text, "tcp"));
        let (public, internal) = ports.split_once(':').unwrap_or((ports, ports));
        let port: u16 = public.parse().map_err(|_| bad(PortProblem::PublicPort))?;
        let internal_port: u16 = internal
            .parse()
            .map_err(|_| bad(PortProblem::MachinePort))?;
        let mut parts = rest.split(':');
        let protocol = parts.next().unwrap_or("tcp").to_string();
        if protocol != "tcp" && protocol != "udp" {
            return Err(bad(PortProblem::Protocol));
        }
        let mut handlers: Vec<String> = parts.map(str::to_string).collect();
        if handlers.is_empty()
            && let Some((_, web)) = WEB_PORTS.iter().find(|(web, _)| *web == port)
        {
            handlers = web.iter().map(|h| h.to_string()).collect();
        }
        Ok(PortSpec {
            port,
            internal_port,
            protocol,
            handlers,
        })
    }
}

/// Services for the specs: one per (machine port, protocol), holding its public ports.
pub fn services(specs: &[PortSpec]) -> Vec<Value> {
    let mut services: Vec<Value> = Vec::new();
    for spec in specs {
        let port = json!({"port": spec.port, "handlers": spec.handlers});
        let same = |s: &&mut Value| {
            s["internal_port"] == spec.internal_port && s["protocol"] == spec.protocol.as_str()
        };
        match services.iter_mut().find(same) {
            Some(service) => service["ports"].as_array_mut().expect("ports").push(port),
            None => services.push(json!({
                "protocol": spec.protocol,
                "internal_port": spec.internal_port,
                "ports": [port],
            })),
        }
    }
    services
}

#[cfg(test)]
mod tests {
    use super::*;

    /// flyctl's spellings parse; the seed's two ports share one service.
    #[test]
    fn parses_and_groups() {
        let tls = PortSpec::parse("443:8080/tcp:tls:http").unwrap();
        assert_eq!(
            (tls.port, tls.internal_port, tls.handlers.clone()),
            (443, 8080, vec!["tls".to_string(), "http".to_string()])
        );
        let plain = PortSpec::parse("80:8080/tcp:http").unwrap();
        let bare = PortSpec::parse("5432").unwrap();
        assert_eq!((bare.internal_port, bare.protocol.as_str()), (5432, "tcp"));
        let problem = |text| PortSpec::parse(text).unwrap_err().problem;
        assert_eq!(problem("http"), PortProblem::PublicPort);
        assert_eq!(problem("80:x"), PortProblem::MachinePort);
        assert_eq!(problem("80/sctp"), PortProblem::Protocol);
        assert_eq!(
            PortSpec::parse("80/sctp").unwrap_err().to_string(),
            "--port `80/sctp`: protocol must be tcp or udp (e.g. 443:8080/tcp:tls:http)"
        );
        let services = services(&[tls, plain, bare]);
        assert_eq!(services.len(), 2);
        assert_eq!(services[0]["ports"].as_array().unwrap().len(), 2);
        assert_eq!(services[1]["internal_port"], 5432);
    }

    /// `-p 8080` is the machine's port, served on 80 and 443 with web handlers; 80 and
    /// 443 without handlers get those same handlers.
    #[test]
    fn bare_port_is_served_on_the_web_ports() {
        let specs = PortSpec::parse_flag("8080").unwrap();
        let seen: Vec<_> = specs
            .iter()
            .map(|s| (s.port, s.internal_port, s.handlers.join(",")))
            .collect();
        assert_eq!(
            seen,
            [
                (80, 8080, "http".to_string()),
                (443, 8080, "tls,http".to_string())
            ]
        );
        let https = PortSpec::parse_flag("443:3000").unwrap();
        assert_eq!(https[0].handlers, ["tls", "http"]);
        assert_eq!(PortSpec::parse_flag("80").unwrap()[0].internal_port, 80);
        assert_eq!(services(&specs).len(), 1);
    }
}
