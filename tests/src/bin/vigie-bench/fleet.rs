//! `fleet`: one collector and N simulated agents (default 750), each with
//! its own enrolled certificate and its own mTLS connection, sending batches
//! at a set total rate, as a fleet does at the reference load (~1 billion
//! lines a week, 1,650 events/s) or a multiple of it.
//!
//! Every agent is enrolled for real (`POST /v1/enroll`, a token of N uses, a
//! key generated here): N distinct certificates. The batches are those an
//! agent ships (syslog lines through the agent's own normalizer, gzip level
//! 1; see [`crate::ingest`]), prebuilt into a pool. Agent `k` sends one batch
//! every `interval_secs`, starting at `k * interval / N` so the fleet is
//! spread over the interval, with `rate * interval / N` events each (the
//! collector's quotas stay at their defaults). A batch that is refused or
//! fails is counted as an error and sent again at the next tick, as the
//! agent would. The latency of a batch is from its request to its
//! acknowledgement (which comes once it is durable, so it includes the
//! collector's commit interval).
//!
//! Printed: acknowledged events/s against the target, acknowledgement
//! latency p50 / p99 / max, errors by kind, the collector's CPU (% of a core)
//! and VmRSS / VmHWM, and this generator's own CPU (it shares the machine).
//! The stored count is checked against the acknowledged one at the end.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio::sync::Mutex;
use vigie_wire::{pki, EnrollRequest, EnrollResponse};

use crate::common::{self, LoadGate};
use crate::ingest;

/// What `fleet` needs.
#[derive(Debug, Clone)]
pub struct FleetOpts {
    pub agents: usize,
    /// Events per second, all agents together.
    pub rate: f64,
    pub interval_secs: f64,
    pub secs: u64,
    pub work: std::path::PathBuf,
    pub commit_ms: u64,
    pub collector_set: Vec<String>,
}

/// One simulated agent: its mTLS client.
struct SimAgent {
    client: reqwest::Client,
}

/// What the senders record.
#[derive(Default)]
struct Tally {
    latencies_ms: Vec<f64>,
    acked_events: u64,
    acked_batches: u64,
    throttled: u64,
    refused: u64,
    transport: u64,
    behind: u64,
    /// When the last acknowledgement came.
    last_ack: Option<Instant>,
}

pub fn run(o: &FleetOpts, gate: &LoadGate) -> Result<()> {
    if o.agents == 0 || o.rate <= 0.0 || o.interval_secs <= 0.0 {
        bail!("--agents, --rate and --interval-secs must be positive");
    }
    std::fs::create_dir_all(&o.work)?;
    let per_batch = ((o.rate * o.interval_secs / o.agents as f64).round() as u64).max(1);
    let pool_events = (per_batch * 256).min(2_000_000);
    let pool = Arc::new(ingest::build_batches(pool_events, per_batch, &[])?);
    let tmp = tempfile::Builder::new()
        .prefix("fleet-")
        .tempdir_in(&o.work)?;
    // The defaults, not the benchmarks' "quotas off": a fleet is what they are for.
    let mut set = vec![
        "agent_events_per_second = 5000".to_owned(),
        "max_events_per_second = 60000".to_owned(),
    ];
    set.extend(o.collector_set.iter().cloned());
    let c = common::start_collector(tmp.path(), o.commit_ms, &set)?;
    let c_pid = common::collector_pid(&c)?;
    let ca = std::fs::read_to_string(c.ca_path())?;
    let token = c.token(&["--uses", &o.agents.to_string()])?;
    let base = c.base_url();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let t = Instant::now();
    let agents = rt.block_on(enroll_all(&base, &ca, &token, o.agents))?;
    println!(
        "fleet: {} agents enrolled (distinct certificates) in {:.1} s; {} events per batch every {} s per agent, target {:.0} events/s; collector commit_interval_ms={} {:?}",
        agents.len(),
        t.elapsed().as_secs_f64(),
        per_batch,
        o.interval_secs,
        o.rate,
        o.commit_ms,
        o.collector_set
    );
    let load = gate.wait("fleet");
    let tally = Arc::new(Mutex::new(Tally::default()));
    let cpu0 = common::cpu_secs(c_pid)?;
    let me0 = common::cpu_secs(std::process::id())?;
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs(o.secs);
    rt.block_on(async {
        let mut tasks = Vec::with_capacity(agents.len());
        for (k, a) in agents.into_iter().enumerate() {
            let (pool, tally, url) = (pool.clone(), tally.clone(), format!("{base}/v1/batches"));
            let interval = Duration::from_secs_f64(o.interval_secs);
            let offset = interval.mul_f64(k as f64 / o.agents as f64);
            tasks.push(tokio::spawn(async move {
                send_loop(k, a, pool, tally, url, interval, offset, t0, deadline).await
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    });
    let elapsed = t0.elapsed().as_secs_f64();
    let used = common::cpu_secs(c_pid)? - cpu0;
    let me = common::cpu_secs(std::process::id())? - me0;
    let m = common::mem(c_pid)?;
    let mut t = std::mem::take(&mut *rt.block_on(tally.lock()));
    // The rate is over the sending window: from the start to the last acknowledgement (the
    // tasks also sleep out their last interval, which is not part of it).
    let secs = t
        .last_ack
        .map_or(elapsed, |l| l.duration_since(t0).as_secs_f64());
    // Everything acknowledged is stored (commits are done once acknowledged).
    let stored = c.count("")?;
    t.latencies_ms.sort_by(f64::total_cmp);
    let pct = |p: f64| -> f64 {
        if t.latencies_ms.is_empty() {
            return f64::NAN;
        }
        let i = ((t.latencies_ms.len() as f64 - 1.0) * p).round() as usize;
        t.latencies_ms[i]
    };
    println!(
        "fleet: {} agents, {:.0} s: {} batches / {} events acknowledged = {:.0} events/s (target {:.0}); ack latency p50={:.0} ms p99={:.0} ms max={:.0} ms; errors: {} throttled (429), {} refused, {} transport; {} sends started late (previous still in flight); collector cpu={:.0}% of a core VmRSS={} KiB VmHWM={} KiB; generator cpu={:.0}% of a core; stored {stored}; load1 before={load:.2}",
        o.agents,
        secs,
        t.acked_batches,
        t.acked_events,
        t.acked_events as f64 / secs,
        o.rate,
        pct(0.5),
        pct(0.99),
        t.latencies_ms.last().copied().unwrap_or(f64::NAN),
        t.throttled,
        t.refused,
        t.transport,
        t.behind,
        used / elapsed * 100.0,
        m.rss_kib,
        m.hwm_kib,
        me / elapsed * 100.0,
    );
    if stored != t.acked_events {
        bail!("{} events acknowledged but {stored} stored", t.acked_events);
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn send_loop(
    k: usize,
    a: SimAgent,
    pool: Arc<Vec<ingest::Batch>>,
    tally: Arc<Mutex<Tally>>,
    url: String,
    interval: Duration,
    offset: Duration,
    t0: Instant,
    deadline: Instant,
) {
    let stream = format!("fleet{k}");
    let mut seq = 0u64;
    let mut next = tokio::time::Instant::from_std(t0 + offset);
    loop {
        tokio::time::sleep_until(next).await;
        if Instant::now() >= deadline {
            return;
        }
        let b = &pool[(k + seq as usize) % pool.len()];
        let sent = Instant::now();
        let r = a
            .client
            .post(&url)
            .header(vigie_wire::BATCH_HEADER, format!("{stream}/{seq}"))
            .header("content-type", "application/x-ndjson")
            .header("content-encoding", "gzip")
            .body(b.gz.clone())
            .send()
            .await;
        let ms = sent.elapsed().as_secs_f64() * 1000.0;
        let mut t = tally.lock().await;
        match r {
            Ok(r) if r.status().is_success() => {
                t.latencies_ms.push(ms);
                t.acked_events += b.events;
                t.acked_batches += 1;
                t.last_ack = Some(Instant::now());
                seq += 1;
            }
            Ok(r) if r.status().as_u16() == 429 => t.throttled += 1,
            Ok(_) => t.refused += 1,
            Err(_) => t.transport += 1,
        }
        next += interval;
        let now = tokio::time::Instant::now();
        if next < now {
            t.behind += 1;
            next = now;
        }
    }
}

/// Enrolls `n` agents, 16 at a time; each gets its own key and certificate.
async fn enroll_all(base: &str, ca: &str, token: &str, n: usize) -> Result<Vec<SimAgent>> {
    let anon = client(ca, None)?;
    let mut out = Vec::with_capacity(n);
    let mut k = 0;
    while k < n {
        let chunk = (n - k).min(16);
        let mut set = tokio::task::JoinSet::new();
        for i in k..k + chunk {
            let (anon, base, token, ca) = (
                anon.clone(),
                base.to_owned(),
                token.to_owned(),
                ca.to_owned(),
            );
            set.spawn(async move {
                let (csr_pem, key_pem) = pki::generate_csr()?;
                let req = EnrollRequest {
                    token,
                    csr_pem,
                    hostname: format!("sim-{i:04}"),
                    version: Some("fleet-bench".into()),
                };
                let resp: EnrollResponse = anon
                    .post(format!("{base}/v1/enroll"))
                    .json(&req)
                    .send()
                    .await?
                    .error_for_status()
                    .context("enrollment refused")?
                    .json()
                    .await?;
                Ok::<_, anyhow::Error>(SimAgent {
                    client: client(&ca, Some((&resp.cert_pem, &key_pem)))?,
                })
            });
        }
        while let Some(r) = set.join_next().await {
            out.push(r??);
        }
        k += chunk;
    }
    Ok(out)
}

fn client(ca: &str, identity: Option<(&str, &str)>) -> Result<reqwest::Client> {
    let tls = pki::client_tls_config(ca, identity)?;
    Ok(reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(1)
        .build()?)
}
