//! What every driver uses: running a command with capped output (`exec`), the machine's
//! log (`log`), finding processes (`procfs`), telling the machine's own socket from a
//! stranger's (`sockets`), each machine's directory, and what a machine is told about
//! itself.

pub mod exec;
pub mod log;
pub mod procfs;
pub mod sockets;

use super::Launch;
use std::path::Path;

/// What every driver tells a machine about itself (Fly's runtime environment names).
pub fn fly_env(launch: &Launch) -> Vec<(&'static str, String)> {
    vec![
        ("PORT", launch.port.to_string()),
        ("HOST", launch.private_ip.to_string()),
        ("FLY_PRIVATE_IP", launch.private_ip.to_string()),
        ("FLY_MACHINE_ID", launch.machine_id.clone()),
        ("FLY_ALLOC_ID", launch.machine_id.clone()),
        ("FLY_APP_NAME", launch.app.clone()),
        ("FLY_REGION", launch.region.clone()),
        ("FLY_IMAGE_REF", launch.image.clone()),
        ("FLY_MACHINE_VERSION", launch.instance_id.clone()),
    ]
}

/// Removes a destroyed machine's directory (scratch, log, bundle), if there.
pub async fn remove_machine_dir(machines_dir: &Path, machine_id: &str) {
    let dir = machines_dir.join(machine_id);
    if let Err(e) = tokio::fs::remove_dir_all(&dir).await
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(machine = machine_id, "cannot remove {}: {e}", dir.display());
    }
}
