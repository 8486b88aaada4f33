//! Realistic syslog lines for the benchmarks.
//!
//! Lines look like `/var/log/auth.log` and `/var/log/syslog` on a Debian
//! bastion: RFC 3164 (`Nov 26 09:14:02 host app[pid]: message`, no `<PRI>`,
//! local time, no year), from sshd, sudo, CRON, systemd,
//! kernel (UFW), postfix and nginx, with varied users, addresses, ports and
//! pids so that neither compression nor indexing sees the same line twice.
//! Lines are 112 to 214 bytes long (148 on average, 99% between 120 and
//! 200; the newline excluded). The
//! generator is deterministic for a given seed, so every repetition ships
//! the same bytes.

use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::{Context, Result};
use chrono::{DateTime, Duration, Local};

/// A small deterministic PRNG (xorshift64*): enough to vary fields.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    pub fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

const HOSTS: &[&str] = &[
    "bastion-01.par1.infra.example.net",
    "bastion-02.par1.infra.example.net",
    "ws-0421.office.example.net",
    "ws-0187.office.example.net",
    "build-runner-3.ci.example.net",
    "web-frontend-1.prod.example.net",
    "db-replica-2.prod.example.net",
    "vpn-gw.edge.example.net",
];
const USERS: &[&str] = &[
    "alice", "bob", "carol", "deploy", "root", "admin", "oracle", "test", "ubuntu", "git",
    "jenkins", "postgres", "www-data", "backup", "mallory", "svc-ci",
];
const SUDO_COMMANDS: &[&str] = &[
    "/usr/bin/systemctl restart nginx.service",
    "/usr/bin/apt-get install -y --no-install-recommends htop",
    "/usr/bin/journalctl -u sshd --since today",
    "/bin/cat /etc/shadow",
    "/usr/bin/docker compose -f /srv/app/docker-compose.yml up -d",
    "/usr/sbin/iptables -L -n -v",
    "/usr/bin/tail -n 200 /var/log/nginx/error.log",
];
const KEY_TYPES: &[&str] = &["ED25519", "RSA", "ECDSA"];
const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const URLS: &[&str] = &[
    "/api/v1/orders?page=2&per_page=50",
    "/wp-login.php",
    "/static/js/app.7f3c2a1b.js",
    "/healthz",
    "/api/v1/users/4821/sessions",
    "/.env",
    "/login?next=%2Fdashboard",
];
const AGENTS: &[&str] = &[
    "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
    "curl/7.88.1",
    "python-requests/2.31.0",
    "Go-http-client/1.1",
];

fn ip(r: &mut Rng) -> String {
    match r.below(4) {
        0 => format!("203.0.113.{}", r.below(254) + 1),
        1 => format!("198.51.100.{}", r.below(254) + 1),
        2 => format!("192.0.2.{}", r.below(254) + 1),
        _ => format!("10.{}.{}.{}", r.below(256), r.below(256), r.below(254) + 1),
    }
}

fn fingerprint(r: &mut Rng) -> String {
    (0..43).map(|_| B64[r.below(64) as usize] as char).collect()
}

/// One line (without newline) stamped `ts`.
pub fn line(r: &mut Rng, ts: DateTime<Local>) -> String {
    let stamp = ts.format("%b %e %H:%M:%S");
    let host = r.pick(HOSTS);
    let pid = 1000 + r.below(60000);
    let user = r.pick(USERS);
    let port = 1024 + r.below(64000);
    let addr = ip(r);
    let msg = match r.below(16) {
        0..=2 => format!(
            "sshd[{pid}]: Failed password for invalid user {user} from {addr} port {port} ssh2"
        ),
        3 => format!(
            "sshd[{pid}]: pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost={addr}  user={user}"
        ),
        4 | 5 => format!(
            "sshd[{pid}]: message repeated {} times: [ Failed password for {user} from {addr} port {port} ssh2]",
            2 + r.below(3)
        ),
        6 => format!(
            "sshd[{pid}]: Accepted publickey for {user} from {addr} port {port} ssh2: {} SHA256:{}",
            r.pick(KEY_TYPES),
            fingerprint(r)
        ),
        7 => format!(
            "sshd[{pid}]: pam_unix(sshd:session): session opened for user {user}(uid={}) by (uid=0)",
            1000 + r.below(500)
        ),
        8 => format!(
            "sshd[{pid}]: Connection closed by authenticating user {user} {addr} port {port} [preauth]"
        ),
        9 => format!(
            "sshd[{pid}]: Disconnected from invalid user {user} {addr} port {port} [preauth]"
        ),
        10 => format!(
            "sudo[{pid}]:    {user} : TTY=pts/{} ; PWD=/home/{user} ; USER=root ; COMMAND={}",
            r.below(8),
            r.pick(SUDO_COMMANDS)
        ),
        11 => format!(
            "CRON[{pid}]: pam_unix(cron:session): session opened for user {user}(uid={}) by (uid=0)",
            r.below(2000)
        ),
        12 => format!(
            "systemd[1]: session-{}.scope: Deactivated successfully. Consumed {}.{:03}s CPU time, {} memory peak.",
            r.below(90000),
            r.below(30),
            r.below(1000),
            ["1.2M", "4.8M", "17.3M", "212K"][r.below(4) as usize]
        ),
        13 => format!(
            "kernel: [{}.{:06}] [UFW BLOCK] IN=eth0 OUT= SRC={addr} DST=10.0.0.5 LEN=60 TTL=52 PROTO=TCP SPT={port} DPT={}",
            r.below(9_000_000),
            r.below(1_000_000),
            [22u64, 23, 80, 443, 3389, 5432][r.below(6) as usize]
        ),
        14 => format!(
            "postfix/smtpd[{pid}]: NOQUEUE: reject: RCPT from unknown[{addr}]: 554 5.7.1 Relay access denied; proto=ESMTP"
        ),
        _ => format!(
            "nginx[{pid}]: {addr} - - \"GET {} HTTP/1.1\" {} {} \"{}\"",
            r.pick(URLS),
            [200u64, 301, 404, 403, 500][r.below(5) as usize],
            r.below(50_000),
            r.pick(AGENTS)
        ),
    };
    format!("{stamp} {host} {msg}")
}

/// `n` lines whose timestamps run evenly from `start` over `span`.
pub fn lines(seed: u64, n: u64, start: DateTime<Local>, span: Duration) -> Vec<String> {
    let mut r = Rng::new(seed);
    let step_ms = span.num_milliseconds().max(1) as f64 / n.max(1) as f64;
    (0..n)
        .map(|i| {
            line(
                &mut r,
                start + Duration::milliseconds((i as f64 * step_ms) as i64),
            )
        })
        .collect()
}

/// Writes `n` lines stamped over the hour before now; returns the file size in bytes.
pub fn write_file(path: &Path, seed: u64, n: u64) -> Result<u64> {
    let now = Local::now();
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    let mut bytes = 0u64;
    for l in lines(seed, n, now - Duration::hours(1), Duration::minutes(59)) {
        w.write_all(l.as_bytes())?;
        w.write_all(b"\n")?;
        bytes += l.len() as u64 + 1;
    }
    w.flush()?;
    Ok(bytes)
}
