//! Reading rule files into one collection, and the load report.
//!
//! Every file under the given paths (directories are walked, `*.yml` / `*.yaml`) is read with a
//! size cap and parsed as single- or multi-document Sigma YAML. Documents that cannot be used
//! are not fatal: each becomes a [`Rejection`] naming the file, the rule id when the document
//! has one, and the reason. The rest of the pack loads.

use std::io::Read;
use std::path::{Path, PathBuf};

use rsigma_parser::{parse_sigma_yaml, SigmaCollection};
use serde::Serialize;

use crate::mapping::is_yaml;

mod legacy;
use crate::DetectError;

/// Largest rule file read; a Sigma rule is a few KiB.
pub const MAX_RULE_FILE_BYTES: u64 = 1024 * 1024;

/// Deepest directory walked under a rule path.
const MAX_DEPTH: usize = 16;

/// A document that did not load.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rejection {
    /// The file it came from.
    pub file: PathBuf,
    /// Its `id`, when it has one.
    pub id: Option<String>,
    /// What is wrong with it.
    pub reason: String,
}

/// What loading a rule pack did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LoadReport {
    /// Rule files read.
    pub files: usize,
    /// Documents loaded: detection rules, correlation rules and filters.
    pub loaded: usize,
    /// Detection rules among them.
    pub detection_rules: usize,
    /// Correlation rules among them.
    pub correlation_rules: usize,
    /// Filters among them.
    pub filters: usize,
    /// Rules and correlations left out because they are disabled.
    pub disabled: usize,
    /// Documents that did not load, and why.
    pub rejected: Vec<Rejection>,
}

/// Every parsed document, with the file each came from (same order as the collection).
pub(crate) struct Parsed {
    pub collection: SigmaCollection,
    pub rule_files: Vec<PathBuf>,
    pub correlation_files: Vec<PathBuf>,
    pub filter_files: Vec<PathBuf>,
    /// The bytes read, for the pack version.
    pub sources: Vec<(PathBuf, Vec<u8>)>,
}

/// Lists the rule files under `paths`, sorted, so a pack always loads in the same order.
pub fn rule_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, DetectError> {
    let mut out = Vec::new();
    for path in paths {
        let meta = std::fs::metadata(path).map_err(|e| DetectError::io(path, e))?;
        if meta.is_dir() {
            walk(path, &mut out, MAX_DEPTH)?;
        } else {
            out.push(path.clone());
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>, depth: usize) -> Result<(), DetectError> {
    if depth == 0 {
        return Ok(());
    }
    for entry in std::fs::read_dir(dir).map_err(|e| DetectError::io(dir, e))? {
        let entry = entry.map_err(|e| DetectError::io(dir, e))?;
        let path = entry.path();
        let kind = entry.file_type().map_err(|e| DetectError::io(&path, e))?;
        if kind.is_dir() {
            walk(&path, out, depth - 1)?;
        } else if is_yaml(&path) {
            out.push(path);
        }
    }
    Ok(())
}

/// Reads the YAML files under `paths` (as [`rule_files`] lists them) as named texts, for
/// [`crate::RuleSet::load_sources`] or to serve them: each is named by its path from the
/// directory holding the configured path (`sigma/lnx_sudo.yml` for `rules/sigma`). A file
/// larger than [`MAX_RULE_FILE_BYTES`] or not UTF-8 is an error.
pub fn read_sources(paths: &[PathBuf]) -> Result<Vec<(String, String)>, DetectError> {
    let mut out = Vec::new();
    for root in paths {
        let base = root.parent().unwrap_or(Path::new(""));
        for file in rule_files(std::slice::from_ref(root))? {
            let text = read_capped(&file, MAX_RULE_FILE_BYTES)?;
            let name = file
                .strip_prefix(base)
                .unwrap_or(&file)
                .display()
                .to_string();
            out.push((name, text));
        }
    }
    Ok(out)
}

/// Reads a whole file, refusing one larger than `cap`.
pub(crate) fn read_capped(path: &Path, cap: u64) -> Result<String, DetectError> {
    let bytes = read_bytes_capped(path, cap)?;
    String::from_utf8(bytes).map_err(|_| DetectError::Io {
        path: path.to_owned(),
        message: "not UTF-8 text".into(),
    })
}

fn read_bytes_capped(path: &Path, cap: u64) -> Result<Vec<u8>, DetectError> {
    let file = std::fs::File::open(path).map_err(|e| DetectError::io(path, e))?;
    let mut bytes = Vec::new();
    file.take(cap + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| DetectError::io(path, e))?;
    if bytes.len() as u64 > cap {
        return Err(DetectError::Io {
            path: path.to_owned(),
            message: format!("larger than {cap} bytes"),
        });
    }
    Ok(bytes)
}

/// Parses every file; problems become rejections in `report`.
/// Files parsed on each core (YAML parsing dominates loading a large pack); the results are
/// merged in file order, so the pack is the same whatever the number of threads.
pub(crate) fn parse_files(files: &[PathBuf], report: &mut LoadReport) -> Parsed {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 8);
    if threads == 1 || files.len() < 64 {
        return parse_chunk(files, report);
    }
    let chunk = files.len().div_ceil(threads);
    let parts: Vec<(Parsed, LoadReport)> = std::thread::scope(|scope| {
        let handles: Vec<_> = files
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    let mut r = LoadReport::default();
                    (parse_chunk(part, &mut r), r)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    });
    let mut parsed = empty();
    for (p, r) in parts {
        report.files += r.files;
        report.rejected.extend(r.rejected);
        parsed.extend(p);
    }
    parsed
}

impl Parsed {
    pub(crate) fn empty() -> Parsed {
        Parsed {
            collection: SigmaCollection::new(),
            rule_files: Vec::new(),
            correlation_files: Vec::new(),
            filter_files: Vec::new(),
            sources: Vec::new(),
        }
    }

    /// Appends another parse (a later file).
    pub(crate) fn extend(&mut self, p: Parsed) {
        self.collection.rules.extend(p.collection.rules);
        self.collection
            .correlations
            .extend(p.collection.correlations);
        self.collection.filters.extend(p.collection.filters);
        self.rule_files.extend(p.rule_files);
        self.correlation_files.extend(p.correlation_files);
        self.filter_files.extend(p.filter_files);
        self.sources.extend(p.sources);
    }
}

fn empty() -> Parsed {
    Parsed::empty()
}

fn parse_chunk(files: &[PathBuf], report: &mut LoadReport) -> Parsed {
    let mut parsed = empty();
    for file in files {
        report.files += 1;
        let bytes = match read_bytes_capped(file, MAX_RULE_FILE_BYTES) {
            Ok(b) => b,
            Err(e) => {
                report.rejected.push(reject(file, None, e.to_string()));
                continue;
            }
        };
        let text = String::from_utf8_lossy(&bytes).into_owned();
        parsed.sources.push((file.clone(), bytes));
        add_text(&mut parsed, file, &text, report);
    }
    parsed
}

/// Parses rules given as text (an API request, an alert filter) as if read from `origin`.
pub(crate) fn parse_text(origin: &Path, text: &str, report: &mut LoadReport) -> Parsed {
    let mut parsed = empty();
    report.files += 1;
    parsed
        .sources
        .push((origin.to_owned(), text.as_bytes().to_vec()));
    add_text(&mut parsed, origin, text, report);
    parsed
}

/// Adds the documents of one file's text to `parsed`; problems go to `report`.
fn add_text(parsed: &mut Parsed, file: &Path, text: &str, report: &mut LoadReport) {
    let upgraded = legacy::upgrade(text);
    let text = upgraded.as_deref().unwrap_or(text);
    let collection = match parse_sigma_yaml(text) {
        Ok(c) => c,
        Err(e) => {
            report.rejected.push(reject(file, None, e.to_string()));
            return;
        }
    };
    let errors: Vec<&String> = collection
        .errors
        .iter()
        .filter(|e| !is_metadata_warning(e))
        .collect();
    if !errors.is_empty() {
        // The parser does not say which document an error belongs to: name the ids of the
        // documents that did not come out, in order.
        let mut missing = rejected_ids(text, &collection).into_iter();
        for e in errors {
            report
                .rejected
                .push(reject(file, missing.next().flatten(), e.clone()));
        }
    }
    let SigmaCollection {
        rules,
        correlations,
        filters,
        ..
    } = collection;
    let file = file.to_owned();
    parsed
        .rule_files
        .extend(std::iter::repeat_n(file.clone(), rules.len()));
    parsed
        .correlation_files
        .extend(std::iter::repeat_n(file.clone(), correlations.len()));
    parsed
        .filter_files
        .extend(std::iter::repeat_n(file, filters.len()));
    parsed.collection.rules.extend(rules);
    parsed.collection.correlations.extend(correlations);
    parsed.collection.filters.extend(filters);
}

/// Metadata problems (`related`, dates) that the parser reports but that keep the rule.
fn is_metadata_warning(e: &str) -> bool {
    e.starts_with("'related'") || e.starts_with("related[") || e.starts_with("invalid ")
}

/// The ids (when present) of the documents of `text` that are not in `parsed`, in file order.
fn rejected_ids(text: &str, parsed: &SigmaCollection) -> Vec<Option<String>> {
    use serde::Deserialize;
    let mut out_ids = std::collections::HashSet::new();
    out_ids.extend(parsed.rules.iter().filter_map(|r| r.id.clone()));
    out_ids.extend(parsed.correlations.iter().filter_map(|r| r.id.clone()));
    out_ids.extend(parsed.filters.iter().filter_map(|r| r.id.clone()));
    let mut missing = Vec::new();
    for doc in yaml_serde::Deserializer::from_str(text) {
        let Ok(value) = yaml_serde::Value::deserialize(doc) else {
            break;
        };
        if value.get("action").is_some() {
            continue;
        }
        let id = value.get("id").and_then(|v| v.as_str()).map(str::to_owned);
        match id {
            Some(id) if out_ids.contains(&id) => {}
            other => missing.push(other),
        }
    }
    missing
}

pub(crate) fn reject(file: &Path, id: Option<String>, reason: String) -> Rejection {
    Rejection {
        file: file.to_owned(),
        id,
        reason,
    }
}
