//! `ingest`: the collector alone, from gzip NDJSON batches to durable events.
//!
//! The batches are exactly what an agent ships: generated syslog lines go
//! through the agent's own [`Normalizer`] (the syslog codec, host, file path
//! and offset, source, dataset, agent fields), are serialized one event per
//! line and gzipped at the agent's default level (1). They are built before
//! the clock starts. Then `senders` threads, each with its own mTLS
//! connection (the certificate of an agent enrolled for the purpose), POST
//! them to `/v1/batches` with distinct `Vigie-Batch` ids until every batch is
//! acknowledged (`200`, `accepted` = the batch's events). Throughput = events
//! (and uncompressed / compressed bytes) / time from the first request to
//! the last acknowledgement. The collector's `VmHWM`, `VmRSS` and CPU time
//! are read at the end, and the stored total is checked through the API.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use chrono::{Duration as ChronoDuration, Local};
use vigie_agent::pipeline::{Decoder, Normalizer, SourceInfo};
use vigie_agent::sources::file::RawLine;
use vigie_e2e::{https_client, Agent};
use vigie_parse::Codec;

use crate::common::{self, Figure, LoadGate};
use crate::gen;

/// What `ingest` needs.
#[derive(Debug, Clone)]
pub struct IngestOpts {
    pub events: u64,
    pub batch_events: u64,
    pub senders: usize,
    pub reps: usize,
    pub work: std::path::PathBuf,
    pub commit_ms: u64,
    /// `key = value` lines replacing those of collector.toml.
    pub collector_set: Vec<String>,
    /// Fields removed from every event before it is serialized (for
    /// experiments on what indexing costs, e.g. `event.original`).
    pub drop_fields: Vec<String>,
}

/// One prebuilt batch.
pub struct Batch {
    pub gz: Vec<u8>,
    pub raw_bytes: usize,
    pub events: u64,
}

/// Builds the batches the agent would ship for `total` generated lines.
pub fn build_batches(total: u64, per_batch: u64, drop_fields: &[String]) -> Result<Vec<Batch>> {
    let source: Arc<str> = Arc::from("auth");
    let path: Arc<Path> = Arc::from(Path::new("/var/log/auth.log"));
    let mut sources = HashMap::new();
    sources.insert(
        source.clone(),
        SourceInfo {
            decoder: Decoder::Codec(Codec::Syslog),
            dataset: "system.auth".to_owned(),
            logsource: Vec::new(),
        },
    );
    let host =
        std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_else(|_| "bench".into());
    let normalizer = Normalizer::new(host.trim().to_owned(), sources);
    let ctx = normalizer.context();
    let now = Local::now();
    let lines = gen::lines(
        0x1e57,
        total,
        now - ChronoDuration::hours(1),
        ChronoDuration::minutes(59),
    );
    let mut batches = Vec::new();
    let mut st = Stages::default();
    let mut offset = 0u64;
    for chunk in lines.chunks(per_batch.max(1) as usize) {
        let t = Instant::now();
        let mut events = Vec::with_capacity(chunk.len());
        for l in chunk {
            let end = offset + l.len() as u64 + 1;
            let raw = RawLine {
                source: source.clone(),
                path: path.clone(),
                fingerprint: 0x5eed,
                offset,
                end_offset: end,
                bytes: l.as_bytes().to_vec(),
                truncated: false,
                lines_joined: 1,
            };
            offset = end;
            let mut ev = normalizer.file_line(&raw, &ctx);
            for f in drop_fields {
                ev.remove(f);
            }
            events.push(ev);
        }
        st.normalize += t.elapsed();
        let t = Instant::now();
        let mut body = Vec::with_capacity(chunk.len() * 700);
        for ev in &events {
            serde_json::to_writer(&mut body, ev.as_map())?;
            body.push(b'\n');
        }
        st.serialize += t.elapsed();
        let t = Instant::now();
        let gz = vigie_wire::gzip(&body, 1);
        st.gzip += t.elapsed();
        // What the collector does first with a batch: inflate and parse each line.
        let t = Instant::now();
        let inflated = vigie_wire::gunzip_capped(&gz, 64 << 20)?;
        for line in inflated.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let _: serde_json::Value = serde_json::from_slice(line)?;
        }
        st.decode += t.elapsed();
        batches.push(Batch {
            gz,
            raw_bytes: body.len(),
            events: chunk.len() as u64,
        });
    }
    let per = |d: Duration| d.as_secs_f64() * 1e6 / total.max(1) as f64;
    println!(
        "ingest: one thread, in process, per event: agent normalize (syslog codec + fields) {:.2} us, serialize {:.2} us, gzip level 1 {:.2} us; collector-side gunzip + JSON parse {:.2} us",
        per(st.normalize),
        per(st.serialize),
        per(st.gzip),
        per(st.decode)
    );
    Ok(batches)
}

/// Time spent in each step while building the batches.
#[derive(Default)]
struct Stages {
    normalize: Duration,
    serialize: Duration,
    gzip: Duration,
    decode: Duration,
}

/// The first event of the first batch, for the report.
fn sample_event(b: &Batch) -> String {
    let raw = vigie_wire::gunzip_capped(&b.gz, 64 << 20).unwrap_or_default();
    let text = String::from_utf8_lossy(&raw);
    text.lines().next().unwrap_or("").to_owned()
}

pub fn run(o: &IngestOpts, gate: &LoadGate) -> Result<()> {
    std::fs::create_dir_all(&o.work)?;
    // The in-process stage timings printed while building need a quiet machine too.
    gate.wait("ingest: building batches");
    let t = Instant::now();
    let batches = Arc::new(build_batches(o.events, o.batch_events, &o.drop_fields)?);
    let raw: usize = batches.iter().map(|b| b.raw_bytes).sum();
    let gz: usize = batches.iter().map(|b| b.gz.len()).sum();
    println!(
        "ingest: {} events in {} batches of {}, {:.0} bytes/event NDJSON, {:.1} MB raw, {:.1} MB gzip (level 1, ratio {:.1}), built in {:.1} s; {} senders; collector commit_interval_ms={} {:?}{}",
        o.events,
        batches.len(),
        o.batch_events,
        raw as f64 / o.events as f64,
        raw as f64 / 1e6,
        gz as f64 / 1e6,
        raw as f64 / gz.max(1) as f64,
        t.elapsed().as_secs_f64(),
        o.senders,
        o.commit_ms,
        o.collector_set,
        if o.drop_fields.is_empty() { String::new() } else { format!("; fields dropped: {}", o.drop_fields.join(", ")) }
    );
    if let Some(b) = batches.first() {
        println!("ingest: sample event: {}", sample_event(b));
    }
    let mut eps = Figure::new("ingest events", "events/s");
    let mut mbs = Figure::new("ingest uncompressed", "MB/s");
    let mut gzs = Figure::new("ingest compressed (wire)", "MB/s");
    let mut hwm = Figure::new("ingest collector VmHWM", "MiB");
    let mut cpu = Figure::new("ingest collector cpu", "% of a core");
    let mut loads = Figure::new("ingest load average before runs", "load1");
    for rep in 1..=o.reps {
        let tmp = tempfile::Builder::new()
            .prefix("ingest-")
            .tempdir_in(&o.work)?;
        let c = common::start_collector(tmp.path(), o.commit_ms, &o.collector_set)?;
        let agent = Agent::enroll(tmp.path(), "agent", &c)?;
        let (cert, key) = agent.identity()?;
        let ca = std::fs::read_to_string(c.ca_path())?;
        let url = c.url("/v1/batches");
        let stream = format!("bench{}", chrono::Utc::now().timestamp_millis());
        let c_pid = common::collector_pid(&c)?;
        let clients = (0..o.senders)
            .map(|_| https_client(&ca, Some((&cert, &key))))
            .collect::<Result<Vec<_>>>()?;
        loads.push(gate.wait(&format!("ingest {rep}/{}", o.reps)));
        let cpu0 = common::cpu_secs(c_pid)?;
        let threads0 = common::thread_cpu(c_pid);
        let next = Arc::new(AtomicUsize::new(0));
        let t0 = Instant::now();
        let handles: Vec<_> = clients
            .into_iter()
            .map(|client| {
                let (batches, next, url, stream) =
                    (batches.clone(), next.clone(), url.clone(), stream.clone());
                std::thread::spawn(move || -> Result<u64> {
                    let mut acked = 0;
                    loop {
                        let i = next.fetch_add(1, Ordering::SeqCst);
                        let Some(b) = batches.get(i) else {
                            return Ok(acked);
                        };
                        let r = client
                            .post(&url)
                            .header(vigie_wire::BATCH_HEADER, format!("{stream}/{i}"))
                            .header("content-type", "application/x-ndjson")
                            .header("content-encoding", "gzip")
                            .body(b.gz.clone())
                            .send()
                            .with_context(|| format!("batch {i}"))?;
                        let status = r.status();
                        let v: serde_json::Value = r.json().unwrap_or_default();
                        let accepted = v.get("accepted").and_then(serde_json::Value::as_u64);
                        if !status.is_success() || accepted != Some(b.events) {
                            bail!("batch {i}: {status} {v}");
                        }
                        acked += b.events;
                    }
                })
            })
            .collect();
        let mut acked = 0;
        for h in handles {
            acked += h.join().map_err(|_| anyhow!("sender panicked"))??;
        }
        let secs = t0.elapsed().as_secs_f64();
        let used = common::cpu_secs(c_pid)? - cpu0;
        let threads = common::thread_delta(&threads0, &common::thread_cpu(c_pid), used);
        let m = common::mem(c_pid)?;
        let stored = c.count("")?;
        if stored != o.events || acked != o.events {
            bail!(
                "ingest rep {rep}: {acked} acknowledged, {stored} stored, {} sent",
                o.events
            );
        }
        println!(
            "ingest rep {rep}: {acked} events acknowledged in {secs:.2} s: {:.0} events/s, {:.1} MB/s raw, {:.1} MB/s gzip; collector cpu={:.0}% of a core, VmRSS={} KiB VmHWM={} KiB\n  collector threads: {threads}",
            acked as f64 / secs,
            raw as f64 / 1e6 / secs,
            gz as f64 / 1e6 / secs,
            used / secs * 100.0,
            m.rss_kib,
            m.hwm_kib
        );
        eps.push(acked as f64 / secs);
        mbs.push(raw as f64 / 1e6 / secs);
        gzs.push(gz as f64 / 1e6 / secs);
        hwm.push(m.hwm_kib as f64 / 1024.0);
        cpu.push(used / secs * 100.0);
        drop(agent);
        drop(c);
        std::thread::sleep(Duration::from_millis(100));
    }
    common::print_figures(&[&eps, &mbs, &gzs, &hwm, &cpu, &loads]);
    Ok(())
}
