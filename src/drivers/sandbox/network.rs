//! Machine networking: each run gets a veth pair into its own network namespace. The
//! machine has its address (/32) and a route to the gateway (the range's first address,
//! on the host side of every pair), so the edge reaches it and nothing else does: an
//! nftables table drops every connection a machine opens to the host or to another
//! machine, and everything beyond the host unless `sandbox.egress` allows it.
//!
//! The runtime creates the namespace (owned by the machine's user namespace, so `runc
//! exec` can join it); the pair is made by a `createRuntime` hook, `edgewake
//! sandbox-hook network`, which the runtime runs with the container's pid on stdin.

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Command, Stdio};

/// Host-side interfaces of machine links are named this, then the address in hex.
pub const INTERFACE_PREFIX: &str = "ewm";

/// Why a machine's link or the machines' firewall could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("bad container state: {0}")]
    State(#[source] serde_json::Error),
    #[error("the container state has no pid")]
    NoPid,
    /// `lines` are what `program` was given, to see which one it refused.
    #[error("`{program} -batch` failed on:\n{lines}{source}")]
    Batch {
        program: String,
        lines: String,
        source: CommandError,
    },
    #[error("nft refused the machine firewall: {0}")]
    Firewall(#[source] CommandError),
    #[error("cannot turn on IPv4 forwarding for egress: {0}")]
    Forwarding(#[source] std::io::Error),
}

/// Why a program run with input on stdin did not do its work.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("cannot run {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("cannot write to {program}: {source}")]
    Input {
        program: String,
        source: std::io::Error,
    },
    #[error("{program} failed: {source}")]
    Wait {
        program: String,
        source: std::io::Error,
    },
    /// It ran and refused; its stderr says why.
    #[error("{stderr}")]
    Refused { program: String, stderr: String },
}

/// One machine's link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link {
    pub address: Ipv4Addr,
    pub gateway: Ipv4Addr,
    pub egress: bool,
}

impl Link {
    /// The host side's name: unique per address and within Linux's 15 characters.
    pub fn host_interface(&self) -> String {
        format!("{INTERFACE_PREFIX}{:08x}", u32::from(self.address))
    }

    /// The hook's arguments (`argv[0]` first), for the runtime spec.
    pub fn hook_args(&self) -> Vec<String> {
        let mut args = vec![
            "edgewake".to_string(),
            "sandbox-hook".into(),
            "network".into(),
            "--address".into(),
            self.address.to_string(),
            "--gateway".into(),
            self.gateway.to_string(),
        ];
        if self.egress {
            args.push("--egress".into());
        }
        args
    }

    /// `ip -batch` lines for the host side of the pair; `pid` is the container's first
    /// process.
    fn host_commands(&self, pid: u32) -> String {
        let (hif, gw) = (self.host_interface(), self.gateway);
        format!(
            "link add {hif} type veth peer name eth0 netns {pid}\n\
             addr add {gw}/32 dev {hif}\n\
             link set {hif} up\n"
        )
    }

    /// The host's route to the machine, added last: until the machine's side is up, the
    /// range's unreachable route fails the edge's probes at once, where a route to a
    /// silent link would cost a SYN (or ARP) retry of a whole second.
    fn host_route(&self) -> String {
        let (hif, gw, ip) = (self.host_interface(), self.gateway, self.address);
        format!("route add {ip}/32 dev {hif} src {gw}\n")
    }

    /// `ip -batch` lines run inside the machine's namespace.
    fn machine_commands(&self) -> String {
        let (gw, ip) = (self.gateway, self.address);
        let mut lines = format!(
            "link set lo up\n\
             addr add {ip}/32 dev eth0\n\
             link set eth0 up\n\
             route add {gw}/32 dev eth0 scope link\n"
        );
        if self.egress {
            lines.push_str(&format!("route add default via {gw} dev eth0\n"));
        }
        lines
    }

    /// Wires the link for the container whose runtime state (JSON with `pid`) is given.
    pub fn wire(&self, state_json: &str) -> Result<(), NetworkError> {
        let state: serde_json::Value =
            serde_json::from_str(state_json).map_err(NetworkError::State)?;
        let pid = state["pid"].as_u64().ok_or(NetworkError::NoPid)? as u32;
        let hif = self.host_interface();
        if Path::new("/sys/class/net").join(&hif).exists() {
            run_batch(&["ip"], &format!("link del {hif}\n"))?; // left by a crashed run
        }
        run_batch(&["ip"], &self.host_commands(pid))?;
        // No IPv6 on the host side: the machine cannot reach the host's link-local
        // address. Strict reverse-path filtering: the link only carries the machine's
        // own address, so the firewall can trust source addresses.
        let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{hif}/disable_ipv6"), "1");
        let _ = std::fs::write(format!("/proc/sys/net/ipv4/conf/{hif}/rp_filter"), "1");
        let netns = format!("--net=/proc/{pid}/ns/net");
        run_batch(&["nsenter", &netns, "ip"], &self.machine_commands())?;
        run_batch(&["ip"], &self.host_route())
    }
}

/// Runs `program… -batch -` with `lines` on stdin.
fn run_batch(program: &[&str], lines: &str) -> Result<(), NetworkError> {
    let mut args: Vec<&str> = program[1..].to_vec();
    args.extend(["-batch", "-"]);
    run_with_input(program[0], &args, lines).map_err(|source| NetworkError::Batch {
        program: program.join(" "),
        lines: lines.to_string(),
        source,
    })
}

/// Runs `program args` with `input` on stdin; its stderr is the error.
fn run_with_input(program: &str, args: &[&str], input: &str) -> Result<(), CommandError> {
    let program_name = || program.to_string();
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| CommandError::Spawn {
            program: program_name(),
            source,
        })?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(input.as_bytes())
        .map_err(|source| CommandError::Input {
            program: program_name(),
            source,
        })?;
    let output = child
        .wait_with_output()
        .map_err(|source| CommandError::Wait {
            program: program_name(),
            source,
        })?;
    if output.status.success() {
        Ok(())
    } else {
        Err(CommandError::Refused {
            program: program_name(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        })
    }
}

/// Destinations egress never reaches: the host's and other private networks, link-local
/// (cloud metadata), multicast and reserved blocks.
const NO_EGRESS_TO: &str = "0.0.0.0/8, 10.0.0.0/8, 100.64.0.0/10, 127.0.0.0/8, 169.254.0.0/16, \
                            172.16.0.0/12, 192.0.0.0/24, 192.0.2.0/24, 192.168.0.0/16, \
                            198.18.0.0/15, 198.51.100.0/24, 203.0.113.0/24, 224.0.0.0/4, \
                            240.0.0.0/4";

/// The networks of the host's own IPv4 addresses (`ip -4 -o addr`): egress must not
/// reach the host's LAN even where it is not a private range.
pub fn host_networks() -> Vec<String> {
    let Ok(output) = Command::new("ip")
        .args(["-4", "-o", "addr", "show"])
        .output()
    else {
        return Vec::new();
    };
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|line| !line.contains(&format!(" {INTERFACE_PREFIX}")))
        .filter_map(|line| {
            let cidr = line
                .split_whitespace()
                .skip_while(|w| *w != "inet")
                .nth(1)?;
            cidr.parse::<ipnet::Ipv4Net>()
                .ok()
                .map(|net| net.trunc().to_string())
        })
        .collect()
}

/// This edgewake's table: one per machine range, so instances on other ranges keep
/// their own rules (a packet must pass every table's chains).
pub fn table_name(range: &str) -> String {
    format!("edgewake_{}", range.replace(['.', '/'], "_"))
}

/// The nftables rules for the links of machines in `range`: replies to the edge's
/// connections come back; whatever a machine starts towards the host or another
/// machine is dropped, and IPv6 from machines entirely; with egress, connections to
/// public addresses are forwarded and masqueraded. Machines' source addresses can be
/// trusted: each link only routes its machine's /32 and the hook turns on strict
/// reverse-path filtering.
pub fn firewall_rules(range: &str, egress: bool, host_networks: &[String]) -> String {
    let table = table_name(range);
    let links = format!("\"{INTERFACE_PREFIX}*\"");
    let mine = format!("iifname {links} ip saddr {range}");
    let denied = [NO_EGRESS_TO.to_string()]
        .into_iter()
        .chain(host_networks.iter().cloned())
        .collect::<Vec<_>>()
        .join(", ");
    let (forward_out, nat) = if egress {
        (
            format!(
                "        {mine} ip daddr {{ {denied} }} counter drop\n        {mine} oifname != {links} accept\n"
            ),
            format!(
                "    chain postrouting {{\n        type nat hook postrouting priority srcnat; policy accept;\n        ip saddr {range} oifname != {links} masquerade\n    }}\n"
            ),
        )
    } else {
        (String::new(), String::new())
    };
    format!(
        "table inet {table} {{}}\n\
         delete table inet {table}\n\
         table inet {table} {{\n\
         \x20   chain input {{\n\
         \x20       type filter hook input priority filter - 10; policy accept;\n\
         \x20       iifname {links} meta nfproto ipv6 drop\n\
         \x20       iifname {links} ct state established,related accept\n\
         \x20       iifname {links} drop\n\
         \x20   }}\n\
         \x20   chain forward {{\n\
         \x20       type filter hook forward priority filter - 10; policy accept;\n\
         \x20       iifname {links} meta nfproto ipv6 drop\n\
         \x20       oifname {links} ip daddr {range} ct state established,related accept\n\
         {forward_out}\
         \x20       {mine} drop\n\
         \x20       oifname {links} ip daddr {range} drop\n\
         \x20   }}\n\
         {nat}\
         }}\n"
    )
}

/// Installs (or replaces) the rules and makes the whole range unreachable but through
/// machine links (each link's /32 route is more specific): a machine's address must
/// never be answered by whatever the default route leads to (a proxy, the internet)
/// before its link exists. With egress, turns on IPv4 forwarding (host-wide; it is left
/// on).
pub fn install_firewall(range: &str, egress: bool) -> Result<(), NetworkError> {
    run_nft(&firewall_rules(range, egress, &host_networks()))?;
    run_batch(&["ip"], &format!("route replace unreachable {range}\n"))?;
    if egress {
        std::fs::write("/proc/sys/net/ipv4/ip_forward", "1").map_err(NetworkError::Forwarding)?;
    }
    Ok(())
}

/// Removes this range's table and unreachable route (when the driver is dropped).
pub fn remove_firewall(range: &str) {
    let _ = run_nft(&format!("delete table inet {}\n", table_name(range)));
    remove_range_route(range);
}

fn remove_range_route(range: &str) {
    let _ = run_batch(&["ip"], &format!("route del unreachable {range}\n"));
}

fn run_nft(script: &str) -> Result<(), NetworkError> {
    run_with_input("nft", &["-f", "-"], script).map_err(NetworkError::Firewall)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(egress: bool) -> Link {
        Link {
            address: Ipv4Addr::new(172, 30, 0, 2),
            gateway: Ipv4Addr::new(172, 30, 0, 1),
            egress,
        }
    }

    /// Interface names are unique per address and fit Linux's limit.
    #[test]
    fn names_interfaces_by_address() {
        assert_eq!(link(false).host_interface(), "ewmac1e0002");
        assert!(link(false).host_interface().len() <= 15);
    }

    /// Without egress the machine has no default route and the firewall forwards nothing.
    #[test]
    fn egress_only_when_allowed() {
        assert!(!link(false).machine_commands().contains("default"));
        assert!(
            link(true)
                .machine_commands()
                .contains("route add default via 172.30.0.1")
        );
        let closed = firewall_rules("172.30.0.0/16", false, &[]);
        assert!(closed.contains("iifname \"ewm*\" ip saddr 172.30.0.0/16 drop"));
        assert!(closed.contains("table inet edgewake_172_30_0_0_16"));
        assert!(!closed.contains("masquerade"));
        let open = firewall_rules("172.30.0.0/16", true, &["198.19.7.0/24".into()]);
        assert!(open.contains("masquerade"));
        assert!(open.contains("169.254.0.0/16"));
        assert!(
            open.contains("198.19.7.0/24"),
            "the host's own networks are denied too"
        );
    }

    /// The hook reads the container's pid from the runtime's state.
    #[test]
    fn hook_needs_a_pid() {
        assert!(matches!(link(false).wire("{}"), Err(NetworkError::NoPid)));
        assert!(matches!(
            link(false).wire("not json"),
            Err(NetworkError::State(_))
        ));
        assert!(link(false).hook_args().contains(&"--gateway".to_string()));
    }
}
