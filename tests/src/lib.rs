//! End-to-end harness: runs the real `vigie-collector` and `vigie-agent`
//! binaries on loopback with real mTLS, in temporary directories, and talks
//! to the collector's API like a user would.
//!
//! Binaries are taken from the target directory this test binary lives in,
//! built (or found up to date) by `cargo build` at the first use: see [`bin`].
//!
//! Every child process is killed when its handle is dropped, so a failing
//! test leaves nothing running.

pub mod proxy;

use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;

/// The `Environment=` assignments of the packaged systemd unit of `bin_name`
/// (`systemd/<bin_name>.service`; none when there is no such unit), so that
/// tests and benchmarks run a daemon the way the package does, e.g. with
/// the agent's glibc malloc tunables.
pub fn unit_environment(bin_name: &str) -> Vec<(String, String)> {
    let unit = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../systemd")
        .join(format!("{bin_name}.service"));
    std::fs::read_to_string(unit)
        .map(|text| parse_unit_environment(&text))
        .unwrap_or_default()
}

/// `KEY=VALUE` pairs of the `Environment=` lines of a unit file (several
/// per line, separated by spaces, each possibly in double quotes).
fn parse_unit_environment(text: &str) -> Vec<(String, String)> {
    let mut words = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.trim().strip_prefix("Environment=") else {
            continue;
        };
        let (mut word, mut quoted) = (String::new(), false);
        for c in rest.chars().chain([' ']) {
            match c {
                '"' => quoted = !quoted,
                c if c.is_whitespace() && !quoted => {
                    if !word.is_empty() {
                        words.push(std::mem::take(&mut word));
                    }
                }
                c => word.push(c),
            }
        }
    }
    words
        .into_iter()
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            Some((k.to_owned(), v.to_owned()))
        })
        .collect()
}

/// Where the binaries are. The first call in a test process runs
/// `cargo build` for the binaries (a no-op when they are up to date):
/// `cargo test` does not rebuild them, and a stale binary would be tested
/// in place of the code under test.
pub fn bin(name: &str) -> PathBuf {
    static BUILD: Once = Once::new();
    let dir = bin_dir();
    BUILD.call_once(|| {
        let mut cmd = Command::new(env!("CARGO"));
        if dir.file_name().is_some_and(|n| n == "release") {
            cmd.args([
                "build",
                "--release",
                "-p",
                "vigie-agent",
                "-p",
                "vigie-collector",
                "--bins",
            ]);
        } else {
            // The features that `cargo test --workspace` resolved (dev-dependencies
            // included), so that only the two binaries are linked here. `-p` alone
            // resolves fewer features (syn without `fold`, …) and rebuilds most
            // dependencies a second time: minutes on a cold CI target.
            cmd.args(["build", "--workspace", "--bins", "--tests"]);
        }
        // What cargo sets for this test process only: ring's build script
        // reruns when CARGO_MANIFEST_DIR changes, so passing these on would
        // rebuild the TLS stack here and again at the next plain build.
        for (key, _) in std::env::vars_os() {
            let k = key.to_string_lossy();
            if [
                "CARGO_PKG_",
                "CARGO_MANIFEST_",
                "CARGO_CRATE_",
                "CARGO_BIN_",
            ]
            .iter()
            .any(|p| k.starts_with(p))
                || ["CARGO_PRIMARY_PACKAGE", "CARGO_TARGET_TMPDIR", "OUT_DIR"].contains(&&*k)
            {
                cmd.env_remove(&key);
            }
        }
        let status = cmd.status();
        assert!(
            status.is_ok_and(|s| s.success()),
            "building the binaries failed"
        );
    });
    dir.join(name)
}

fn bin_dir() -> PathBuf {
    // target/<profile>/deps/<test binary>
    let exe = std::env::current_exe().unwrap_or_default();
    exe.parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("target/debug"))
}

/// A port free on loopback right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// Runs a command to completion and returns its output.
pub fn run(bin_name: &str, args: &[&str]) -> Output {
    Command::new(bin(bin_name))
        .args(args)
        .env("VIGIE_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {bin_name}: {e}"))
}

/// A child process killed on drop; its stderr goes to a log file.
pub struct Proc {
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    pub fn spawn(bin_name: &str, args: &[&str], log: PathBuf) -> Result<Proc> {
        let err = std::fs::File::create(&log)?;
        let child = Command::new(bin(bin_name))
            .args(args)
            .envs(unit_environment(bin_name))
            .env("VIGIE_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .with_context(|| format!("spawning {bin_name}"))?;
        Ok(Proc { child, log })
    }

    /// Sends SIGTERM and waits (up to `timeout`) for a clean exit.
    pub fn terminate(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let pid = self.child.id() as i32;
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// SIGKILL, like a crash.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// CPU time (user + system) used so far, in seconds, from /proc.
    pub fn cpu_secs(&self) -> f64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // Fields after the command name, which is in parentheses and may hold spaces.
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        // utime and stime are fields 14 and 15 of stat(5): 12 and 13 after ')'.
        (ticks(11) + ticks(12)) / 100.0
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running collector in its own data directory.
pub struct Collector {
    pub dir: PathBuf,
    pub port: u16,
    pub token: String,
    pub proc: Option<Proc>,
    http: reqwest::blocking::Client,
}

/// An HTTPS client trusting only `ca_pem`, with an optional client identity.
pub fn https_client(
    ca_pem: &str,
    identity: Option<(&str, &str)>,
) -> Result<reqwest::blocking::Client> {
    let tls = vigie_wire::pki::client_tls_config(ca_pem, identity)?;
    Ok(reqwest::blocking::Client::builder()
        .use_preconfigured_tls(tls)
        .timeout(Duration::from_secs(120))
        .build()?)
}

impl Collector {
    /// `init` + `serve`, waiting until the health endpoint answers.
    pub fn start(root: &Path) -> Result<Collector> {
        let dir = root.join("collector");
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let dir_s = dir.to_string_lossy().into_owned();
        let out = run(
            "vigie-collector",
            &[
                "init",
                "--data-dir",
                &dir_s,
                "--listen",
                &listen,
                "--hostname",
                "127.0.0.1",
                "--hostname",
                "localhost",
            ],
        );
        if !out.status.success() {
            bail!("init failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        // Short commits keep tests quick; the default is tuned for load.
        let cfg_path = dir.join("collector.toml");
        let cfg = std::fs::read_to_string(&cfg_path)?
            .replace("commit_interval_ms = 500", "commit_interval_ms = 100");
        std::fs::write(&cfg_path, cfg)?;
        let token = std::fs::read_to_string(dir.join("admin.token"))?
            .trim()
            .to_owned();
        let ca = std::fs::read_to_string(dir.join("pki/ca.pem"))?;
        let mut c = Collector {
            dir,
            port,
            token,
            proc: None,
            http: https_client(&ca, None)?,
        };
        c.serve()?;
        Ok(c)
    }

    /// (Re)starts `serve` and waits for health.
    pub fn serve(&mut self) -> Result<()> {
        let cfg = self.config_path();
        let p = Proc::spawn(
            "vigie-collector",
            &["serve", "--config", &cfg.to_string_lossy()],
            self.dir
                .join(format!("serve-{}.log", Instant::now().elapsed().as_nanos())),
        )?;
        self.proc = Some(p);
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(30) {
            if let Ok(r) = self.http.get(self.url("/api/v1/health")).send() {
                if r.status().is_success() {
                    return Ok(());
                }
            }
            if let Some(p) = self.proc.as_mut() {
                if let Ok(Some(s)) = p.child.try_wait() {
                    bail!("collector exited ({s}): {}", p.log_text());
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!("collector did not become healthy")
    }

    /// Stops the collector cleanly (SIGTERM) and serves it again, e.g. after a config change.
    pub fn restart(&mut self) -> Result<()> {
        if let Some(p) = self.proc.as_mut() {
            p.terminate(Duration::from_secs(10));
        }
        self.serve()
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.join("collector.toml")
    }

    pub fn ca_path(&self) -> PathBuf {
        self.dir.join("pki/ca.pem")
    }

    pub fn base_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base_url(), path)
    }

    /// `token create`.
    pub fn token(&self, extra: &[&str]) -> Result<String> {
        let cfg = self.config_path().to_string_lossy().into_owned();
        let mut args = vec!["token", "create", "--config", cfg.as_str()];
        args.extend_from_slice(extra);
        let out = run("vigie-collector", &args);
        if !out.status.success() {
            bail!(
                "token create failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8(out.stdout)?.trim().to_owned())
    }

    /// GET an API path with the admin token.
    pub fn get(&self, path_and_query: &str) -> Result<(u16, Value)> {
        let r = self
            .http
            .get(self.url(path_and_query))
            .bearer_auth(&self.token)
            .send()?;
        let status = r.status().as_u16();
        Ok((status, r.json().unwrap_or(Value::Null)))
    }

    /// `POST` with a JSON body and the admin token.
    pub fn post(&self, path: &str, body: &Value) -> Result<(u16, Value)> {
        let r = self
            .http
            .post(self.url(path))
            .bearer_auth(&self.token)
            .json(body)
            .send()?;
        let status = r.status().as_u16();
        Ok((status, r.json().unwrap_or(Value::Null)))
    }

    /// `PATCH` with a JSON body and the admin token.
    pub fn patch(&self, path: &str, body: &Value) -> Result<(u16, Value)> {
        let r = self
            .http
            .patch(self.url(path))
            .bearer_auth(&self.token)
            .json(body)
            .send()?;
        let status = r.status().as_u16();
        Ok((status, r.json().unwrap_or(Value::Null)))
    }

    /// The raw client (no token), for tests of refusals.
    pub fn http(&self) -> &reqwest::blocking::Client {
        &self.http
    }

    /// Streams `/api/v1/events/export` and returns every event's `message`.
    pub fn export_messages(&self, query: &str) -> Result<Vec<String>> {
        Ok(self
            .export_events(query)?
            .iter()
            .map(|v| {
                v.get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned()
            })
            .collect())
    }

    /// Streams `/api/v1/events/export` and returns every event.
    pub fn export_events(&self, query: &str) -> Result<Vec<Value>> {
        let r = self
            .http
            .get(self.url("/api/v1/events/export"))
            .query(&[("q", query)])
            .bearer_auth(&self.token)
            .send()?;
        if !r.status().is_success() {
            bail!("export answered {}", r.status());
        }
        let mut out = Vec::new();
        for line in BufReader::new(r).lines() {
            let line = line?;
            if !line.is_empty() {
                out.push(serde_json::from_str(&line)?);
            }
        }
        Ok(out)
    }

    /// `total` of a search.
    pub fn count(&self, query: &str) -> Result<u64> {
        let q: String = query.bytes().map(|b| format!("%{b:02X}")).collect();
        let (status, v) = self.get(&format!("/api/v1/events?limit=0&q={q}"))?;
        if status != 200 {
            bail!("search answered {status}: {v}");
        }
        v.get("total")
            .and_then(Value::as_u64)
            .ok_or_else(|| anyhow!("no total in {v}"))
    }

    /// Waits until `count(query)` reaches `n` (or the timeout passes) and returns the last count.
    pub fn wait_count(&self, query: &str, n: u64, timeout: Duration) -> Result<u64> {
        let start = Instant::now();
        let mut last = 0;
        while start.elapsed() < timeout {
            last = self.count(query)?;
            if last >= n {
                return Ok(last);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(last)
    }
}

/// Appends lines `from..to` to `path` (created if missing), each made by
/// `line(i)` plus a newline, in one write, then fsyncs the file.
pub fn append_lines(path: &Path, from: usize, to: usize, line: impl Fn(usize) -> String) {
    let mut buf = String::with_capacity((to - from) * 64);
    for i in from..to {
        buf.push_str(&line(i));
        buf.push('\n');
    }
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut f| {
            std::io::Write::write_all(&mut f, buf.as_bytes())?;
            f.sync_all()
        });
    if let Err(e) = written {
        panic!("cannot append to {}: {e}", path.display());
    }
}

/// An enrolled agent with its own data directory and config.
pub struct Agent {
    pub dir: PathBuf,
    pub config: PathBuf,
    pub proc: Option<Proc>,
}

impl Agent {
    /// Runs `vigie-agent enroll` with `token` into `dir` and returns its output.
    pub fn enroll_with(collector: &Collector, token: &str, dir: &Path) -> Output {
        run(
            "vigie-agent",
            &[
                "enroll",
                "--collector",
                &collector.base_url(),
                "--ca",
                &collector.ca_path().to_string_lossy(),
                "--token",
                token,
                "--data-dir",
                &dir.to_string_lossy(),
            ],
        )
    }

    /// Enrolls a new agent against `collector` with a fresh one-time token.
    pub fn enroll(root: &Path, name: &str, collector: &Collector) -> Result<Agent> {
        let dir = root.join(name);
        let token = collector.token(&[])?;
        let out = Agent::enroll_with(collector, &token, &dir);
        if !out.status.success() {
            bail!("enroll failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(Agent {
            config: dir.join("agent.toml"),
            dir,
            proc: None,
        })
    }

    /// Writes agent.toml: the collector section plus `sources` (TOML text).
    pub fn configure(&self, collector: &Collector, batch: &str, sources: &str) -> Result<()> {
        self.configure_via(collector, &collector.base_url(), "", batch, sources)
    }

    /// Writes agent.toml shipping to `url` (e.g. a fault proxy in front of
    /// `collector`), with `collector_extra` lines in `[collector]` and `rest`
    /// (more sections, sources) after `[batch]`.
    pub fn configure_via(
        &self,
        collector: &Collector,
        url: &str,
        collector_extra: &str,
        batch: &str,
        rest: &str,
    ) -> Result<()> {
        let text = format!(
            "data_dir = {:?}\n\n[collector]\nurl = {:?}\nca_file = {:?}\ninitial_backoff_ms = 100\nmax_backoff_secs = 2\n{collector_extra}\n\n[batch]\n{batch}\n\n{rest}\n",
            self.dir.to_string_lossy(),
            url,
            collector.ca_path().to_string_lossy(),
        );
        std::fs::write(&self.config, text)?;
        Ok(())
    }

    pub fn start(&mut self) -> Result<()> {
        let log = self.dir.join(format!(
            "agent-{}.log",
            std::process::id() as u128 * 1000 + self.runs()
        ));
        self.proc = Some(Proc::spawn(
            "vigie-agent",
            &["run", "--config", &self.config.to_string_lossy()],
            log,
        )?);
        Ok(())
    }

    fn runs(&self) -> u128 {
        std::fs::read_dir(&self.dir)
            .map(|d| d.count() as u128)
            .unwrap_or(0)
    }

    /// The agent's client identity (cert PEM, key PEM).
    pub fn identity(&self) -> Result<(String, String)> {
        Ok((
            std::fs::read_to_string(self.dir.join("agent.pem"))?,
            std::fs::read_to_string(self.dir.join("agent.key"))?,
        ))
    }
}

/// Reads a whole response body with a cap (for tests of error bodies).
pub fn body_text(r: reqwest::blocking::Response) -> String {
    let mut s = String::new();
    let _ = r.take(1 << 20).read_to_string(&mut s);
    s
}

/// The shared test data folder, if present (users' clones do not have it).
pub fn shared_data() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data");
    p.is_dir().then_some(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_environment_reads_every_assignment() {
        let text = "[Service]\nEnvironment=A=1 \"B=two words\"\n  Environment=C=x=y\nExecStart=/bin/true\n";
        let got = parse_unit_environment(text);
        let want = [("A", "1"), ("B", "two words"), ("C", "x=y")]
            .map(|(k, v)| (k.to_owned(), v.to_owned()));
        assert_eq!(got, want);
    }

    #[test]
    fn the_agent_runs_with_the_units_malloc_tunables() {
        let env = unit_environment("vigie-agent");
        let tunables = env.iter().find(|(k, _)| k == "GLIBC_TUNABLES");
        assert!(
            tunables.is_some_and(|(_, v)| v.contains("glibc.malloc.mmap_threshold=")),
            "systemd/vigie-agent.service sets no malloc tunables: {env:?}"
        );
        assert!(unit_environment("no-such-daemon").is_empty());
    }
}
