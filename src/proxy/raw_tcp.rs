//! Services whose port has only the `tls` handler: after TLS the edge speaks no HTTP,
//! it wakes a machine of the app the server name routes to and joins the decrypted
//! stream to it, over a connection counted in the upstream budget and paced.

use super::{Proxy, place, tunnel, upstream};
use crate::machines::App;
use std::net::SocketAddr;
use std::sync::Arc;

impl Proxy {
    /// The app at `host` if its service on `port` terminates TLS and passes bytes on
    /// (`handlers = ["tls"]`), rather than speaking HTTP.
    pub fn raw_tcp_app(&self, host: &str, port: u16) -> Option<Arc<App>> {
        let app = self
            .route(&self.settings.load(), &host.to_ascii_lowercase())
            .ok()?;
        let passthrough = app.with_machines(|machines| {
            machines.iter().any(|m| {
                m.spec()
                    .port_for(port)
                    .is_some_and(|(_, p)| p.is_tls_passthrough())
            })
        });
        passthrough.then_some(app)
    }

    /// Wakes a machine of `app` and joins the client's decrypted stream to its port.
    pub async fn tunnel_tcp<S>(&self, app: &App, port: u16, client: S, peer: SocketAddr)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let (plan, send) = {
            let settings = self.settings.load();
            let location = settings.geo.locate(peer.ip());
            let plan = place::plan(&settings.regions, location, &http::HeaderMap::new());
            (plan, settings.machine.send)
        };
        let ready = match self.ready(app, port, &plan).await {
            Ok(ready) => ready,
            Err(e) => return tracing::debug!(app = %app.record.name, "TCP tunnel not opened: {e}"),
        };
        if !ready.machine.is_local() {
            // Raw TCP crosses no backhaul: the backhaul speaks HTTP.
            let machine = &ready.machine.id;
            return tracing::debug!(%machine, "TCP tunnel not opened: the machine is on another node");
        }
        let addr = SocketAddr::from((ready.machine.private_ip, ready.internal_port));
        match upstream::connect_tcp(addr, &self.upstreams.budget, send).await {
            Ok(machine) => {
                let guard = ready.machine.tunnels.open();
                tunnel::pump(
                    client,
                    machine,
                    tunnel::Carried::Bytes,
                    guard,
                    ready.in_flight,
                )
                .await;
            }
            Err(e) => tracing::debug!(machine = %ready.machine.id, "TCP tunnel: {e}"),
        }
    }
}
