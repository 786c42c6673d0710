//! The OCI runtime spec (`config.json`) of one run of a sandboxed machine: what runs
//! (the image's config under Fly's `init` overrides), as whom, and inside which walls
//! (namespaces, cgroup limits, capabilities, seccomp, read-only kernel paths).

use super::seccomp;
use crate::drivers::shared::fly_env;
use crate::drivers::{Init, Launch};
use crate::images::{IdMap, RunConfig};
use oci_spec::OciSpecError;
use oci_spec::runtime::{
    Capability, HookBuilder, HooksBuilder, LinuxBuilder, LinuxCpuBuilder, LinuxIdMappingBuilder,
    LinuxMemoryBuilder, LinuxNamespaceBuilder, LinuxNamespaceType, LinuxPidsBuilder,
    LinuxResourcesBuilder, Mount, MountBuilder, ProcessBuilder, RootBuilder, Spec, SpecBuilder,
    UserBuilder, get_default_maskedpaths, get_default_readonly_paths,
};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// CFS period the CPU quota is a share of.
const CPU_PERIOD_US: u64 = 100_000;
const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The capabilities a machine keeps (Docker's defaults without raw sockets, mknod,
/// file capabilities and audit): enough to run a server as root in its own namespaces.
const KEPT_CAPABILITIES: &[Capability] = &[
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fowner,
    Capability::Fsetid,
    Capability::Kill,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
];

/// Everything one run's spec is made from.
pub struct RunSpec<'a> {
    pub launch: &'a Launch,
    pub image: &'a RunConfig,
    /// The image's unpacked tree (to read users from `/etc/passwd`).
    pub image_rootfs: &'a Path,
    /// Where the machine's root (the writable overlay) is mounted.
    pub rootfs: &'a Path,
    pub pids_limit: u32,
    pub id_map: Option<IdMap>,
    /// Limit swap to the memory limit too (needs swap accounting on cgroup v1).
    pub limit_swap: bool,
    /// The program and arguments of the hook that wires the machine's network.
    pub network_hook: (PathBuf, Vec<String>),
    /// A static init to run first (bind-mounted read-only), the machine's program its child.
    pub init: Option<PathBuf>,
}

/// Where the init is mounted inside machines.
pub const INIT_PATH: &str = "/.edgewake/init";

/// Why a run's spec cannot be made: the image and the machine's config do not say what
/// to run or as whom, or the spec does not build.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("the image names no entrypoint or command, and config.init gives none")]
    NoCommand,
    #[error(transparent)]
    Id(#[from] UnknownId),
    #[error("cannot write the runtime spec: {0}")]
    Spec(#[from] OciSpecError),
}

/// The image's `user` names someone its own files do not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnknownId {
    #[error("user `{0}` is not in the image's /etc/passwd")]
    User(String),
    #[error("group `{0}` is not in the image's /etc/group")]
    Group(String),
}

/// The program a run starts: `init.exec`, else entrypoint + command, each from `init`
/// when given. As with `docker run --entrypoint`, a new entrypoint drops the image's
/// command.
pub fn argv(init: &Init, image: &RunConfig) -> Result<Vec<String>, BundleError> {
    let argv = match (&init.exec, &init.entrypoint, &init.cmd) {
        (Some(exec), _, _) => exec.clone(),
        (None, Some(entrypoint), cmd) => {
            [entrypoint.clone(), cmd.clone().unwrap_or_default()].concat()
        }
        (None, None, cmd) => [
            image.entrypoint.clone(),
            cmd.clone().unwrap_or_else(|| image.cmd.clone()),
        ]
        .concat(),
    };
    if argv.is_empty() {
        return Err(BundleError::NoCommand);
    }
    Ok(argv)
}

/// The image's `user` (`name`, `uid`, `uid:gid`, `name:group`) as numeric ids, names
/// looked up in the image's own `/etc/passwd` and `/etc/group`.
pub fn user_ids(user: Option<&str>, image_rootfs: &Path) -> Result<(u32, u32), UnknownId> {
    let Some(user) = user.filter(|u| !u.is_empty()) else {
        return Ok((0, 0));
    };
    let (name, group) = match user.split_once(':') {
        Some((n, g)) => (n, Some(g)),
        None => (user, None),
    };
    let passwd = image_file(image_rootfs, "passwd");
    let entry = lookup(&passwd, name);
    let uid = match name.parse::<u32>() {
        Ok(uid) => uid,
        Err(_) => entry
            .as_ref()
            .and_then(|e| e.get(2)?.parse().ok())
            .ok_or_else(|| UnknownId::User(name.to_string()))?,
    };
    let gid = match group {
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => {
                let groups = image_file(image_rootfs, "group");
                lookup(&groups, g)
                    .and_then(|e| e.get(2)?.parse().ok())
                    .ok_or_else(|| UnknownId::Group(g.to_string()))?
            }
        },
        None => entry.and_then(|e| e.get(3)?.parse().ok()).unwrap_or(uid),
    };
    Ok((uid, gid))
}

/// Most bytes of `/etc/passwd` or `/etc/group` read from an image.
const MAX_ID_FILE: u64 = 1024 * 1024;

/// The image's `/etc/<name>`, read safely on the host: the image is hostile, so neither
/// `etc` nor the file may be a symlink (it would point into the host), the file must be
/// a regular one (not a FIFO or a device), and at most `MAX_ID_FILE` bytes are read.
/// Anything else reads as empty.
fn image_file(image_rootfs: &Path, name: &str) -> String {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let etc = image_rootfs.join("etc");
    if !std::fs::symlink_metadata(&etc).is_ok_and(|m| m.is_dir()) {
        return String::new();
    }
    let flags = nix::fcntl::OFlag::O_NOFOLLOW | nix::fcntl::OFlag::O_NONBLOCK;
    let Ok(file) = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags.bits())
        .open(etc.join(name))
    else {
        return String::new();
    };
    if !file.metadata().is_ok_and(|m| m.is_file()) {
        return String::new();
    }
    let mut text = String::new();
    let _ = file.take(MAX_ID_FILE).read_to_string(&mut text);
    text
}

/// The `:`-separated fields of the line of `file` whose first field is `name`.
fn lookup<'a>(file: &'a str, name: &str) -> Option<Vec<&'a str>> {
    file.lines()
        .map(|line| line.split(':').collect::<Vec<_>>())
        .find(|fields| fields.first() == Some(&name))
}

/// The environment: the image's, then the machine config's, then Fly's names.
fn environment(run: &RunSpec) -> Vec<String> {
    let mut env: Vec<String> = Vec::new();
    let mut set = |key: &str, value: &str| {
        env.retain(|e| e.split_once('=').map(|(k, _)| k) != Some(key));
        env.push(format!("{key}={value}"));
    };
    if !run.image.env.iter().any(|e| e.starts_with("PATH=")) {
        let (k, v) = DEFAULT_PATH.split_once('=').expect("constant has =");
        set(k, v);
    }
    for entry in &run.image.env {
        if let Some((k, v)) = entry.split_once('=') {
            set(k, v);
        }
    }
    for (k, v) in &run.launch.env {
        set(k, v);
    }
    for (k, v) in fly_env(run.launch) {
        set(k, &v);
    }
    env
}

/// The whole runtime spec of one run.
pub fn runtime_spec(run: &RunSpec) -> Result<Spec, BundleError> {
    let mut argv = argv(&run.launch.init, run.image)?;
    if run.init.is_some() {
        argv.splice(0..0, [INIT_PATH.to_string(), "--".to_string()]);
    }
    let (uid, gid) = user_ids(run.image.user.as_deref(), run.image_rootfs)?;
    Ok(build(run, argv, uid, gid)?)
}

fn build(run: &RunSpec, argv: Vec<String>, uid: u32, gid: u32) -> Result<Spec, OciSpecError> {
    let caps: HashSet<Capability> = KEPT_CAPABILITIES.iter().copied().collect();
    let capabilities = oci_spec::runtime::LinuxCapabilitiesBuilder::default()
        .bounding(caps.clone())
        .effective(caps.clone())
        .permitted(caps)
        .inheritable(HashSet::new())
        .ambient(HashSet::new())
        .build()?;
    let process = ProcessBuilder::default()
        .terminal(false)
        .user(UserBuilder::default().uid(uid).gid(gid).build()?)
        .args(argv)
        .env(environment(run))
        .cwd(
            run.image
                .working_dir
                .clone()
                .filter(|w| w.starts_with('/'))
                .unwrap_or_else(|| "/".into()),
        )
        .capabilities(capabilities)
        .no_new_privileges(true)
        .build()?;
    let (hook_path, hook_args) = &run.network_hook;
    let hooks = HooksBuilder::default()
        .create_runtime(vec![
            HookBuilder::default()
                .path(hook_path.clone())
                .args(hook_args.clone())
                .timeout(10i64)
                .build()?,
        ])
        .build()?;
    SpecBuilder::default()
        .version("1.0.2")
        .root(
            RootBuilder::default()
                .path(run.rootfs)
                .readonly(false)
                .build()?,
        )
        .hostname(run.launch.machine_id.clone())
        .mounts(mounts(run.init.as_deref())?)
        .process(process)
        .hooks(hooks)
        .linux(linux(run)?)
        .build()
}

fn linux(run: &RunSpec) -> Result<oci_spec::runtime::Linux, OciSpecError> {
    let guest = run.launch.guest;
    let memory_bytes = (guest.memory_mb * 1024 * 1024) as i64;
    let mut memory = LinuxMemoryBuilder::default().limit(memory_bytes);
    if run.limit_swap {
        memory = memory.swap(memory_bytes);
    }
    let resources = LinuxResourcesBuilder::default()
        .memory(memory.build()?)
        .cpu(
            LinuxCpuBuilder::default()
                .quota(guest.cpus as i64 * CPU_PERIOD_US as i64)
                .period(CPU_PERIOD_US)
                .build()?,
        )
        .pids(
            LinuxPidsBuilder::default()
                .limit(run.pids_limit as i64)
                .build()?,
        )
        .build()?;
    let mut kinds = vec![
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Network,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Mount,
        LinuxNamespaceType::Cgroup,
    ];
    if run.id_map.is_some() {
        kinds.push(LinuxNamespaceType::User);
    }
    let namespaces = kinds
        .into_iter()
        .map(|typ| LinuxNamespaceBuilder::default().typ(typ).build())
        .collect::<Result<Vec<_>, _>>()?;
    let mut linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .resources(resources)
        .cgroups_path(PathBuf::from(format!(
            "/edgewake/{}",
            run.launch.machine_id
        )))
        .masked_paths(get_default_maskedpaths())
        .readonly_paths(get_default_readonly_paths())
        .seccomp(seccomp::profile()?);
    if let Some(map) = run.id_map {
        let mapping = LinuxIdMappingBuilder::default()
            .container_id(0u32)
            .host_id(map.host_id)
            .size(map.size)
            .build()?;
        linux = linux
            .uid_mappings(vec![mapping])
            .gid_mappings(vec![mapping]);
    }
    linux.build()
}

/// The kernel's file systems a machine sees: its own /proc, a small /dev, no /sys; and
/// the init, read-only.
fn mounts(init: Option<&Path>) -> Result<Vec<Mount>, OciSpecError> {
    let mount = |dest: &str, typ: &str, source: &str, options: &[&str]| {
        MountBuilder::default()
            .destination(dest)
            .typ(typ)
            .source(source)
            .options(options.iter().map(|o| o.to_string()).collect::<Vec<_>>())
            .build()
    };
    let mut mounts = vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"])?,
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        )?,
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
            ],
        )?,
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        )?,
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        )?,
    ];
    if let Some(init) = init {
        mounts.push(
            MountBuilder::default()
                .destination(INIT_PATH)
                .typ("bind")
                .source(init)
                .options(vec![
                    "bind".to_string(),
                    "ro".to_string(),
                    "nodev".to_string(),
                ])
                .build()?,
        );
    }
    Ok(mounts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drivers::Guest;
    use std::net::Ipv4Addr;

    fn image() -> RunConfig {
        RunConfig {
            entrypoint: vec!["/bin/server".into()],
            cmd: vec!["--port".into(), "8080".into()],
            env: vec!["PATH=/bin".into(), "MODE=image".into()],
            working_dir: Some("/srv".into()),
            user: None,
        }
    }

    fn launch(init: Init) -> Launch {
        Launch {
            machine_id: "m1".into(),
            app: "a".into(),
            region: "ams".into(),
            instance_id: "i".into(),
            private_ip: Ipv4Addr::new(172, 30, 0, 2),
            image: "img".into(),
            env: [("MODE".to_string(), "machine".to_string())].into(),
            port: 8080,
            init,
            guest: Guest {
                memory_mb: 128,
                cpus: 2,
            },
        }
    }

    /// Fly's init fields override the image as Docker's run flags do.
    #[test]
    fn init_overrides_the_image() {
        let image = image();
        let argv_of = |init: Init| argv(&init, &image).unwrap();
        assert_eq!(argv_of(Init::default()), ["/bin/server", "--port", "8080"]);
        let cmd = Init {
            cmd: Some(vec!["--debug".into()]),
            ..Init::default()
        };
        assert_eq!(argv_of(cmd), ["/bin/server", "--debug"]);
        let entrypoint = Init {
            entrypoint: Some(vec!["/bin/sh".into()]),
            ..Init::default()
        };
        assert_eq!(argv_of(entrypoint), ["/bin/sh"]);
        let exec = Init {
            exec: Some(vec!["/bin/other".into()]),
            cmd: Some(vec!["ignored".into()]),
            ..Init::default()
        };
        assert_eq!(argv_of(exec), ["/bin/other"]);
        assert!(matches!(
            argv(&Init::default(), &RunConfig::default()),
            Err(BundleError::NoCommand)
        ));
    }

    /// Users are read as numbers or looked up in the image's own files.
    #[test]
    fn resolves_users_from_the_image() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("etc")).unwrap();
        std::fs::write(
            root.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/app:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(root.path().join("etc/group"), "root:x:0:\nstaff:x:50:\n").unwrap();
        assert_eq!(user_ids(None, root.path()), Ok((0, 0)));
        assert_eq!(user_ids(Some("app"), root.path()), Ok((1000, 1001)));
        assert_eq!(user_ids(Some("app:staff"), root.path()), Ok((1000, 50)));
        assert_eq!(user_ids(Some("7:8"), root.path()), Ok((7, 8)));
        assert_eq!(
            user_ids(Some("nobody-here"), root.path()),
            Err(UnknownId::User("nobody-here".into()))
        );
    }

    /// A hostile image cannot make edgewake read host files, hang on a FIFO or read
    /// without end: symlinks and non-regular files read as empty.
    #[test]
    fn image_id_files_stay_in_the_image() {
        let host = tempfile::tempdir().unwrap();
        let host_passwd = host.path().join("passwd");
        std::fs::write(&host_passwd, "secret:x:4242:4242::/:/bin/sh\n").unwrap();
        let image = tempfile::tempdir().unwrap();
        std::fs::create_dir(image.path().join("etc")).unwrap();
        std::os::unix::fs::symlink(&host_passwd, image.path().join("etc/passwd")).unwrap();
        assert!(user_ids(Some("secret"), image.path()).is_err());
        nix::unistd::mkfifo(
            &image.path().join("etc/group"),
            nix::sys::stat::Mode::S_IRWXU,
        )
        .unwrap();
        assert_eq!(
            user_ids(Some("0:staff"), image.path()),
            Err(UnknownId::Group("staff".into()))
        );
        let linked = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(host.path(), linked.path().join("etc")).unwrap();
        assert!(user_ids(Some("secret"), linked.path()).is_err());
    }

    /// The spec carries the limits, namespaces, id map, hook and environment.
    #[test]
    fn spec_holds_the_walls() {
        let launch = launch(Init::default());
        let image = image();
        let run = RunSpec {
            launch: &launch,
            image: &image,
            image_rootfs: Path::new("/nonexistent"),
            rootfs: Path::new("/data/machines/m1/rootfs"),
            pids_limit: 64,
            id_map: Some(IdMap {
                host_id: 1_000_000,
                size: 65_536,
            }),
            limit_swap: true,
            network_hook: ("/bin/edgewake".into(), vec!["edgewake".into()]),
            init: Some("/usr/bin/tini-static".into()),
        };
        let spec = serde_json::to_value(runtime_spec(&run).unwrap()).unwrap();
        let linux = &spec["linux"];
        assert_eq!(linux["resources"]["memory"]["limit"], 128 * 1024 * 1024);
        assert_eq!(linux["resources"]["pids"]["limit"], 64);
        assert_eq!(linux["resources"]["cpu"]["quota"], 200_000);
        assert_eq!(linux["uidMappings"][0]["hostID"], 1_000_000);
        let kinds: Vec<&str> = linux["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["type"].as_str().unwrap())
            .collect();
        for kind in ["pid", "network", "ipc", "uts", "mount", "user"] {
            assert!(kinds.contains(&kind), "{kind} missing from {kinds:?}");
        }
        assert!(linux["seccomp"]["syscalls"].as_array().unwrap().len() > 1);
        assert_eq!(spec["process"]["noNewPrivileges"], true);
        assert_eq!(spec["process"]["cwd"], "/srv");
        let env = spec["process"]["env"].as_array().unwrap();
        assert!(env.contains(&"MODE=machine".into()), "{env:?}");
        assert!(env.contains(&"FLY_MACHINE_ID=m1".into()), "{env:?}");
        assert!(!spec["mounts"].to_string().contains("sysfs"));
        assert_eq!(spec["hooks"]["createRuntime"][0]["path"], "/bin/edgewake");
        assert_eq!(spec["process"]["args"][0], INIT_PATH);
        assert_eq!(spec["process"]["args"][2], "/bin/server");
        assert!(spec["mounts"].to_string().contains("tini-static"));
    }
}
