//! Prints the load report of rule paths: `cargo run --release -p vigie-detect --example load_report -- PATH...`
use std::path::PathBuf;
use std::time::Instant;

fn main() {
    let paths: Vec<PathBuf> = std::env::args().skip(1).map(PathBuf::from).collect();
    let mut opts = vigie_detect::LoadOptions::default();
    if let Ok(dir) = std::env::var("MAPPINGS") {
        opts.mappings = vigie_detect::load_mapping_dir(dir.as_ref()).expect("mappings");
    }
    let t = Instant::now();
    let (set, report) = vigie_detect::RuleSet::load(&paths, &opts).expect("load");
    let took = t.elapsed();
    for r in &report.rejected {
        println!("REJECT {} {:?}: {}", r.file.display(), r.id, r.reason);
    }
    println!(
        "files {} loaded {} (rules {}, correlations {}, filters {}) rejected {} in {:?}; version {}",
        report.files,
        report.loaded,
        report.detection_rules,
        report.correlation_rules,
        report.filters,
        report.rejected.len(),
        took,
        set.version()
    );
    println!("{set:?}");
}
