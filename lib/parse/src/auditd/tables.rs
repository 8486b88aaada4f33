//! What record types and system calls mean: the ECS `event.action`, `event.category` and
//! `event.type` of an event, which records stand alone, and architecture names.
//!
//! The actions are those of Elastic's auditd integration (generated there from go-libaudit:
//! `executed`, `logged-in`, `added-user-account`...); a record type missing here gets its
//! lower-cased name as action and no category, as Elastic does.

use super::syscalls;

/// Who `acct` and `id` name in a record, by the kind of record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Subject {
    /// `acct` is the user the event is about (logins, authentication, sessions): `user.name`.
    User,
    /// A user account being managed: `user.target.name` / `user.target.id`.
    TargetUser,
    /// A group being managed: `group.name` / `group.id`.
    TargetGroup,
}

/// The ECS description of a record type or system call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Meaning {
    pub action: &'static str,
    pub category: &'static [&'static str],
    pub kind: &'static [&'static str],
    pub subject: Subject,
}

const fn m(
    action: &'static str,
    category: &'static [&'static str],
    kind: &'static [&'static str],
) -> Meaning {
    Meaning {
        action,
        category,
        kind,
        subject: Subject::User,
    }
}

const fn iam(action: &'static str, kind: &'static [&'static str], subject: Subject) -> Meaning {
    Meaning {
        action,
        category: &["iam"],
        kind,
        subject,
    }
}

const AUTH: &[&str] = &["authentication"];
const PROCESS: &[&str] = &["process"];
const HOST: &[&str] = &["host"];
const CONFIG: &[&str] = &["configuration"];
const FILE: &[&str] = &["file"];
const NETWORK: &[&str] = &["network"];
const INFO: &[&str] = &["info"];
const START: &[&str] = &["start"];
const END: &[&str] = &["end"];
const CHANGE: &[&str] = &["change"];

/// The meaning of a record type (as written, upper case), when known.
pub(crate) fn record_type(rtype: &str) -> Option<Meaning> {
    use Subject::{TargetGroup, TargetUser};
    Some(match rtype {
        "EXECVE" => m("executed", PROCESS, START),
        "USER_AUTH" => m("authenticated", AUTH, INFO),
        "USER_ACCT" => m("was-authorized", AUTH, INFO),
        "USER_LOGIN" => m("logged-in", AUTH, START),
        "USER_LOGOUT" => m("logged-out", AUTH, END),
        "USER_ERR" => m("error", AUTH, INFO),
        "CRED_ACQ" => m("acquired-credentials", AUTH, INFO),
        "CRED_DISP" => m("disposed-credentials", AUTH, INFO),
        "CRED_REFR" => m("refreshed-credentials", AUTH, INFO),
        "GRP_AUTH" => m("authenticated-to-group", AUTH, INFO),
        "LOGIN" => m("changed-login-id-to", AUTH, START),
        "USER_START" => m("started-session", &["session"], START),
        "USER_END" => m("ended-session", &["session"], END),
        "ADD_USER" => iam("added-user-account", &["user", "creation"], TargetUser),
        "DEL_USER" => iam("deleted-user-account", &["user", "deletion"], TargetUser),
        "USER_MGMT" => iam("modified-user-account", &["user", "change"], TargetUser),
        "USER_CHAUTHTOK" => iam("changed-password", &["user", "change"], TargetUser),
        "ACCT_LOCK" => iam("locked-account", &["user", "change"], TargetUser),
        "ACCT_UNLOCK" => iam("unlocked-account", &["user", "change"], TargetUser),
        "CHUSER_ID" => iam("changed-user-id", &["user", "change"], TargetUser),
        "ROLE_ASSIGN" => iam("assigned-user-role-to", &["user", "change"], TargetUser),
        "ROLE_REMOVE" => iam("removed-user-role-from", &["user", "change"], TargetUser),
        "ADD_GROUP" => iam(
            "added-group-account-to",
            &["group", "creation"],
            TargetGroup,
        ),
        "DEL_GROUP" => iam(
            "deleted-group-account-from",
            &["group", "deletion"],
            TargetGroup,
        ),
        "GRP_MGMT" => iam("modified-group-account", &["group", "change"], TargetGroup),
        "GRP_CHAUTHTOK" => iam("changed-group-password", &["group", "change"], TargetGroup),
        "CHGRP_ID" => iam("changed-group", &["group", "change"], TargetGroup),
        "USER_CMD" => m("ran-command", PROCESS, START),
        "SERVICE_START" => m("started-service", PROCESS, START),
        "SERVICE_STOP" => m("stopped-service", PROCESS, &["end"]),
        "SYSTEM_BOOT" => m("booted-system", HOST, START),
        "SYSTEM_SHUTDOWN" => m("shutdown-system", HOST, END),
        "SYSTEM_RUNLEVEL" => m("changed-to-runlevel", HOST, CHANGE),
        "DAEMON_START" => m("started-audit", PROCESS, START),
        "DAEMON_END" => m("shutdown-audit", PROCESS, &["end"]),
        "DAEMON_ABORT" => m("aborted-auditd-startup", PROCESS, &["end"]),
        "DAEMON_CONFIG" => m("changed-auditd-configuration", CONFIG, CHANGE),
        "DAEMON_RECONFIG" => m("reconfigured-auditd", CONFIG, INFO),
        "DAEMON_ROTATE" => m("rotated-audit-logs", PROCESS, CHANGE),
        "DAEMON_RESUME" => m("resumed-audit-logging", PROCESS, CHANGE),
        "DAEMON_ERR" => m("audit-error", PROCESS, INFO),
        "CONFIG_CHANGE" => m("changed-audit-configuration", CONFIG, CHANGE),
        "USYS_CONFIG" => m("changed-configuration", CONFIG, CHANGE),
        "NETFILTER_CFG" => m("loaded-firewall-rule-to", CONFIG, CHANGE),
        "MAC_STATUS" => m("changed-selinux-enforcement", CONFIG, CHANGE),
        "MAC_CONFIG_CHANGE" => m("changed-selinux-boolean", CONFIG, CHANGE),
        "MAC_POLICY_LOAD" => m("loaded-selinux-policy", CONFIG, &["access"]),
        "KERN_MODULE" => m("loaded-kernel-module", &["driver"], START),
        "SOFTWARE_UPDATE" => m("package-updated", &["package"], INFO),
        "CRYPTO_SESSION" => m("started-crypto-session", PROCESS, INFO),
        "CRYPTO_KEY_USER" => m("negotiated-crypto-key", PROCESS, INFO),
        "VIRT_CONTROL" => m("issued-vm-control", HOST, INFO),
        "VIRT_MACHINE_ID" => m("assigned-vm-id", HOST, INFO),
        "VIRT_RESOURCE" => m("assigned-vm-resource", HOST, INFO),
        "TTY" | "USER_TTY" => m("typed", PROCESS, INFO),
        "AVC" | "USER_AVC" => m("access-permission", PROCESS, INFO),
        "SECCOMP" => m("violated-seccomp-policy", PROCESS, INFO),
        "ANOM_ABEND" => m("crashed-program", PROCESS, &["end"]),
        "ANOM_PROMISCUOUS" => m("changed-promiscuous-mode-on-device", &["network"], CHANGE),
        _ => return None,
    })
}

/// The meaning of a system call (by name), when it is one of the calls audit rules watch.
pub(crate) fn syscall(name: &str) -> Option<Meaning> {
    Some(match name {
        "execve" | "execveat" => m("executed", PROCESS, START),
        "open" | "openat" | "openat2" | "open_by_handle_at" => m("opened-file", FILE, &["access"]),
        "creat" => m("opened-file", FILE, &["creation"]),
        "truncate" | "ftruncate" => m("opened-file", FILE, CHANGE),
        "unlink" | "unlinkat" | "rmdir" => m("deleted", FILE, &["deletion"]),
        "rename" | "renameat" | "renameat2" => m("renamed", FILE, CHANGE),
        "mkdir" | "mkdirat" => m("created-directory", FILE, &["creation"]),
        "mknod" | "mknodat" => m("make-device", FILE, &["creation"]),
        "link" | "linkat" | "symlink" | "symlinkat" => m("created-link", FILE, &["creation"]),
        "chmod" | "fchmod" | "fchmodat" | "fchmodat2" => {
            m("changed-file-permissions-of", FILE, CHANGE)
        }
        "chown" | "fchown" | "fchownat" | "lchown" => m("changed-file-ownership-of", FILE, CHANGE),
        "setxattr" | "lsetxattr" | "fsetxattr" | "removexattr" | "lremovexattr"
        | "fremovexattr" => m("changed-file-attributes-of", FILE, CHANGE),
        "utime" | "utimes" | "utimensat" | "futimesat" => m("changed-timestamp-of", FILE, CHANGE),
        "mount" => m("mounted", FILE, &["creation"]),
        "umount2" => m("unmounted", FILE, &["deletion"]),
        "connect" => m("connected-to", NETWORK, &["connection", "start"]),
        "accept" | "accept4" => m(
            "accepted-connection-from",
            NETWORK,
            &["connection", "start"],
        ),
        "bind" => m("bound-socket", NETWORK, START),
        "listen" => m("listen-for-connections", NETWORK, START),
        "init_module" | "finit_module" => m("loaded-kernel-module", &["driver"], START),
        "delete_module" => m("unloaded-kernel-module", &["driver"], END),
        "kill" | "tkill" | "tgkill" => m("killed-pid", PROCESS, END),
        "ptrace" => m("traced-process", PROCESS, INFO),
        "setuid" | "setreuid" | "setresuid" | "setfsuid" => m("changed-user-id", PROCESS, CHANGE),
        "setgid" | "setregid" | "setresgid" | "setfsgid" => m("changed-group-id", PROCESS, CHANGE),
        "settimeofday" | "clock_settime" | "adjtimex" | "clock_adjtime" => {
            m("changed-system-time", HOST, CHANGE)
        }
        "sethostname" | "setdomainname" => m("set-hostname", HOST, CHANGE),
        _ => return None,
    })
}

/// The name of an audit architecture code (`c000003e` -> `x86_64`).
pub(crate) fn arch_name(code: &str) -> Option<&'static str> {
    Some(match code {
        "c000003e" => "x86_64",
        "c00000b7" => "aarch64",
        "40000003" => "i386",
        "40000028" => "arm",
        "c0000015" => "ppc64le",
        "80000015" => "ppc64",
        "80000016" => "s390x",
        "c00000f3" => "riscv64",
        _ => return None,
    })
}

/// The name of system call `number` on `arch` (a code or a name), when known.
pub(crate) fn syscall_name(arch: &str, number: &str) -> Option<&'static str> {
    let n: usize = number.parse().ok()?;
    let table: &[&'static str] = match arch {
        "c000003e" | "x86_64" => &syscalls::X86_64,
        "c00000b7" | "aarch64" => &syscalls::AARCH64,
        _ => return None,
    };
    table.get(n).copied().filter(|name| !name.is_empty())
}

/// Whether records of this type are events on their own, never followed by other records of
/// the same serial: messages from user space (types 1100–1299 and 2100–2999: PAM, shadow
/// utilities, systemd, auditd itself) and the kernel's TTY records.
pub(crate) fn stands_alone(rtype: &str) -> bool {
    const PREFIXES: [&str; 13] = [
        "USER_", "CRED_", "ADD_", "DEL_", "GRP_", "ACCT_", "ROLE_", "SERVICE_", "SYSTEM_",
        "DAEMON_", "CRYPTO_", "VIRT_", "RESP_",
    ];
    if PREFIXES.iter().any(|p| rtype.starts_with(p)) {
        return true;
    }
    if let Some(number) = rtype
        .strip_prefix("UNKNOWN[")
        .and_then(|r| r.strip_suffix(']'))
        .and_then(|n| n.parse::<u32>().ok())
    {
        return (1100..=1299).contains(&number) || (2100..=2999).contains(&number);
    }
    matches!(
        rtype,
        "USER"
            | "TTY"
            | "CHUSER_ID"
            | "CHGRP_ID"
            | "USYS_CONFIG"
            | "SOFTWARE_UPDATE"
            | "TEST"
            | "TRUSTED_APP"
            | "DAC_CHECK"
            | "MAC_CHECK"
            | "DEV_ALLOC"
            | "DEV_DEALLOC"
            | "FS_RELABEL"
            | "LABEL_OVERRIDE"
            | "LABEL_LEVEL_CHANGE"
            | "USER_LABELED_EXPORT"
            | "USER_UNLABELED_EXPORT"
    ) || (rtype.starts_with("ANOM_") && !is_kernel_anomaly(rtype))
}

/// The kernel's anomaly records (1700–1799), which come with the records of their syscall.
fn is_kernel_anomaly(rtype: &str) -> bool {
    matches!(
        rtype,
        "ANOM_PROMISCUOUS" | "ANOM_ABEND" | "ANOM_LINK" | "ANOM_CREAT"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syscall_names_by_arch() {
        assert_eq!(syscall_name("c000003e", "59"), Some("execve"));
        assert_eq!(syscall_name("c000003e", "322"), Some("execveat"));
        assert_eq!(syscall_name("c000003e", "135"), Some("personality"));
        assert_eq!(syscall_name("c00000b7", "221"), Some("execve"));
        assert_eq!(syscall_name("c00000b7", "79"), Some("newfstatat"));
        assert_eq!(syscall_name("x86_64", "103"), Some("syslog"));
        assert_eq!(syscall_name("c000003e", "9999"), None);
        assert_eq!(syscall_name("40000003", "11"), None);
        assert_eq!(syscall_name("c000003e", "x"), None);
    }

    #[test]
    fn standalone_types() {
        for t in [
            "USER_LOGIN",
            "ADD_USER",
            "SERVICE_STOP",
            "UNKNOWN[1136]",
            "ANOM_LOGIN_FAILURES",
        ] {
            assert!(stands_alone(t), "{t}");
        }
        for t in [
            "SYSCALL",
            "PATH",
            "EXECVE",
            "LOGIN",
            "ANOM_ABEND",
            "UNKNOWN[1334]",
            "AVC",
        ] {
            assert!(!stands_alone(t), "{t}");
        }
    }
}
