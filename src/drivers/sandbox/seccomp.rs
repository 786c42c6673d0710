//! The default seccomp profile of sandboxed machines: every system call is allowed but
//! those that reach past the container (kernel modules, mounts, clocks, tracing other
//! processes, new namespaces, keyrings, eBPF, io_uring…), which fail with EPERM. It is
//! the deny side of Docker's default profile; with capabilities dropped and a user
//! namespace, it closes the kernel surface a hostile machine could otherwise reach.

use oci_spec::OciSpecError;
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArgBuilder, LinuxSeccompBuilder,
    LinuxSeccompOperator, LinuxSyscall, LinuxSyscallBuilder,
};

const EPERM: u32 = 1;
const ENOSYS: u32 = 38;

/// System calls no machine needs, refused with EPERM.
pub const DENIED: &[&str] = &[
    "acct",
    "add_key",
    "adjtimex",
    "bpf",
    "clock_adjtime",
    "clock_settime",
    "create_module",
    "delete_module",
    "fanotify_init",
    "finit_module",
    "fsconfig",
    "fsmount",
    "fsopen",
    "fspick",
    "get_kernel_syms",
    "init_module",
    "io_uring_enter",
    "io_uring_register",
    "io_uring_setup",
    "ioperm",
    "iopl",
    "kcmp",
    "kexec_file_load",
    "kexec_load",
    "keyctl",
    "lookup_dcookie",
    "mount",
    "mount_setattr",
    "move_mount",
    "name_to_handle_at",
    "nfsservctl",
    "open_by_handle_at",
    "open_tree",
    "perf_event_open",
    "pivot_root",
    "process_vm_readv",
    "process_vm_writev",
    "ptrace",
    "query_module",
    "quotactl",
    "reboot",
    "request_key",
    "setns",
    "settimeofday",
    "swapoff",
    "swapon",
    "syslog",
    "umount",
    "umount2",
    "unshare",
    "uselib",
    "userfaultfd",
    "ustat",
    "vhangup",
];

/// `clone` flags that make new namespaces: refused, like `unshare`.
const NAMESPACE_FLAGS: &[u64] = &[
    0x0002_0000, // CLONE_NEWNS
    0x0200_0000, // CLONE_NEWCGROUP
    0x0400_0000, // CLONE_NEWUTS
    0x0800_0000, // CLONE_NEWIPC
    0x1000_0000, // CLONE_NEWUSER
    0x2000_0000, // CLONE_NEWPID
    0x4000_0000, // CLONE_NEWNET
];

/// The profile, for the runtime spec.
pub fn profile() -> Result<LinuxSeccomp, OciSpecError> {
    let mut syscalls = vec![refuse(DENIED, EPERM)?];
    // clone3 passes its flags in memory seccomp cannot read: ENOSYS makes libc fall
    // back to clone, whose flags are checked below (Docker does the same).
    syscalls.push(refuse(&["clone3"], ENOSYS)?);
    for flag in NAMESPACE_FLAGS {
        let arg = LinuxSeccompArgBuilder::default()
            .index(0usize)
            .value(*flag)
            .value_two(*flag)
            .op(LinuxSeccompOperator::ScmpCmpMaskedEq)
            .build()?;
        syscalls.push(
            LinuxSyscallBuilder::default()
                .names(vec!["clone".to_string()])
                .action(LinuxSeccompAction::ScmpActErrno)
                .errno_ret(EPERM)
                .args(vec![arg])
                .build()?,
        );
    }
    LinuxSeccompBuilder::default()
        .default_action(LinuxSeccompAction::ScmpActAllow)
        .architectures(vec![
            Arch::ScmpArchX86_64,
            Arch::ScmpArchX86,
            Arch::ScmpArchX32,
        ])
        .syscalls(syscalls)
        .build()
}

fn refuse(names: &[&str], errno: u32) -> Result<LinuxSyscall, OciSpecError> {
    LinuxSyscallBuilder::default()
        .names(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
        .action(LinuxSeccompAction::ScmpActErrno)
        .errno_ret(errno)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The profile refuses mounts and namespace escapes and allows everything else.
    #[test]
    fn refuses_escapes_and_allows_the_rest() {
        let profile = profile().unwrap();
        assert_eq!(profile.default_action(), LinuxSeccompAction::ScmpActAllow);
        let syscalls = profile.syscalls().as_ref().unwrap();
        let refused: Vec<&String> = syscalls.iter().flat_map(|s| s.names()).collect();
        for name in [
            "mount", "unshare", "setns", "ptrace", "bpf", "clone3", "clone",
        ] {
            assert!(refused.iter().any(|n| *n == name), "{name} not refused");
        }
        assert!(!refused.iter().any(|n| *n == "read" || *n == "execve"));
        let clone_rules = syscalls.iter().filter(|s| s.names() == &["clone"]).count();
        assert_eq!(clone_rules, NAMESPACE_FLAGS.len());
    }
}
