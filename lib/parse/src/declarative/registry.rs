//! Parsers by name: the built-in ones (`rules/parsers/*.yml`, compiled into the binary) and the
//! user's (a folder of `*.yml` / `*.yaml` files, read at start), which replace built-in ones of
//! the same name.
//!
//! Invariants: a file's `name` equals its file name without the extension; loading a folder
//! is all or nothing (one bad file and none of the folder is taken); [`Registry::builtin`]
//! never fails: a built-in file that does not load is left out and its error kept (a test
//! checks that there is none).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use super::{Parser, ParserError};

/// The built-in parser files: file name and text. Add a line here for each new file in
/// `rules/parsers/` (a test fails while one is missing).
pub(crate) const BUILTIN: &[(&str, &str)] = &[
    (
        "linux_auth.yml",
        include_str!("../../../../rules/parsers/linux_auth.yml"),
    ),
    (
        "teleport.yml",
        include_str!("../../../../rules/parsers/teleport.yml"),
    ),
    (
        "nginx_access.yml",
        include_str!("../../../../rules/parsers/nginx_access.yml"),
    ),
    (
        "nginx_error.yml",
        include_str!("../../../../rules/parsers/nginx_error.yml"),
    ),
    (
        "apache_access.yml",
        include_str!("../../../../rules/parsers/apache_access.yml"),
    ),
    (
        "journald.yml",
        include_str!("../../../../rules/parsers/journald.yml"),
    ),
    (
        "okta.yml",
        include_str!("../../../../rules/parsers/okta.yml"),
    ),
    (
        "cloudtrail.yml",
        include_str!("../../../../rules/parsers/cloudtrail.yml"),
    ),
    (
        "github_audit.yml",
        include_str!("../../../../rules/parsers/github_audit.yml"),
    ),
    (
        "cloudflare_http.yml",
        include_str!("../../../../rules/parsers/cloudflare_http.yml"),
    ),
    (
        "cloudflare_firewall.yml",
        include_str!("../../../../rules/parsers/cloudflare_firewall.yml"),
    ),
    (
        "crowdstrike_falcon.yml",
        include_str!("../../../../rules/parsers/crowdstrike_falcon.yml"),
    ),
    (
        "datadog.yml",
        include_str!("../../../../rules/parsers/datadog.yml"),
    ),
];

/// Parsers by name.
#[derive(Debug, Default)]
pub struct Registry {
    parsers: BTreeMap<String, Parser>,
    builtin_errors: Vec<ParserError>,
}

/// The file name without its extension, for a path.
fn stem(path: &Path) -> &str {
    path.file_stem().and_then(|s| s.to_str()).unwrap_or("")
}

/// Checks that the parser in `origin` is named after its file.
fn check_name(parser: &Parser, file: &Path, origin: &str) -> Result<(), ParserError> {
    if parser.name() == stem(file) {
        return Ok(());
    }
    Err(ParserError::Invalid {
        origin: origin.to_owned(),
        line: None,
        column: None,
        message: format!(
            "the parser is named {:?} but its file {:?}: name the file {}.yml",
            parser.name(),
            file.file_name().and_then(|s| s.to_str()).unwrap_or(""),
            parser.name()
        ),
    })
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Registry {
        Registry::default()
    }

    /// Every built-in parser that loads; see [`Registry::builtin_errors`] for the others.
    pub fn builtin() -> Registry {
        let mut reg = Registry::new();
        for (file, text) in BUILTIN {
            let origin = format!("rules/parsers/{file}");
            let loaded = Parser::from_yaml(text, &origin)
                .and_then(|p| check_name(&p, Path::new(file), &origin).map(|()| p));
            match loaded {
                Ok(p) => reg.insert(p),
                Err(e) => reg.builtin_errors.push(e),
            }
        }
        reg
    }

    /// The built-in parsers, compiled once per process and shared (what [`Registry::builtin`]
    /// returns, without compiling them again at each call).
    pub fn shared() -> &'static Registry {
        static SHARED: std::sync::OnceLock<Registry> = std::sync::OnceLock::new();
        SHARED.get_or_init(Registry::builtin)
    }

    /// Why built-in parsers were left out by [`Registry::builtin`] (empty in a sound build).
    pub fn builtin_errors(&self) -> &[ParserError] {
        &self.builtin_errors
    }

    /// Loads every `*.yml` and `*.yaml` file of `dir` (not its subfolders), replacing parsers
    /// of the same name; returns how many were loaded. On any error nothing is loaded.
    pub fn load_dir(&mut self, dir: &Path) -> Result<usize, ParserError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| ParserError::Io { path, source }
        };
        let mut files: Vec<PathBuf> = Vec::new();
        for entry in fs::read_dir(dir).map_err(io(dir))? {
            let path = entry.map_err(io(dir))?.path();
            let yaml = path.extension().is_some_and(|e| e == "yml" || e == "yaml");
            if yaml && path.is_file() {
                files.push(path);
            }
        }
        files.sort();
        let mut loaded: Vec<Parser> = Vec::with_capacity(files.len());
        for path in &files {
            let text = fs::read_to_string(path).map_err(io(path))?;
            let origin = path.display().to_string();
            let parser = Parser::from_yaml(&text, &origin)?;
            check_name(&parser, path, &origin)?;
            if loaded.iter().any(|p| p.name() == parser.name()) {
                return Err(ParserError::Invalid {
                    origin,
                    line: None,
                    column: None,
                    message: format!("a parser named {:?} is defined twice", parser.name()),
                });
            }
            loaded.push(parser);
        }
        let n = loaded.len();
        for p in loaded {
            self.insert(p);
        }
        Ok(n)
    }

    /// Adds a parser, replacing one of the same name.
    pub fn insert(&mut self, parser: Parser) {
        self.parsers.insert(parser.name().to_owned(), parser);
    }

    /// The parser of that name.
    pub fn get(&self, name: &str) -> Option<&Parser> {
        self.parsers.get(name)
    }

    /// The names of all parsers, sorted.
    pub fn names(&self) -> Vec<&str> {
        self.parsers.keys().map(String::as_str).collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parsers_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../rules/parsers")
    }

    #[test]
    fn every_shipped_file_is_builtin_and_loads() {
        let reg = Registry::builtin();
        let errors: Vec<String> = reg.builtin_errors().iter().map(|e| e.to_string()).collect();
        assert!(
            errors.is_empty(),
            "built-in parsers that do not load:\n{}",
            errors.join("\n")
        );
        let mut on_disk: Vec<String> = fs::read_dir(parsers_dir())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "yml" || e == "yaml"))
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        on_disk.sort();
        let mut listed: Vec<String> = BUILTIN.iter().map(|(f, _)| (*f).to_owned()).collect();
        listed.sort();
        assert_eq!(
            listed, on_disk,
            "BUILTIN in registry.rs must list rules/parsers/*.yml"
        );
        assert!(reg.get("linux_auth").is_some());
        assert_eq!(reg.names().len(), BUILTIN.len());
    }

    #[test]
    fn user_folders_override_and_load_all_or_nothing() {
        let dir = tempfile_dir();
        let user = "name: linux_auth\ndataset: custom.auth\nstages:\n  - set: {event.action: x}\n";
        fs::write(dir.join("linux_auth.yml"), user).unwrap();
        fs::write(dir.join("notes.txt"), "not a parser").unwrap();
        let mut reg = Registry::builtin();
        assert_eq!(reg.load_dir(&dir).unwrap(), 1);
        assert_eq!(
            reg.get("linux_auth").unwrap().dataset(),
            Some("custom.auth")
        );

        // One bad file: nothing from the folder is taken.
        fs::write(dir.join("other.yml"), "name: other\nstages: [{sett: {}}]\n").unwrap();
        let mut reg = Registry::builtin();
        let err = reg.load_dir(&dir).unwrap_err().to_string();
        assert!(
            err.contains("other.yml:2:") && err.contains("unknown field `sett`"),
            "{err}"
        );
        assert_eq!(
            reg.get("linux_auth").unwrap().dataset(),
            Some("system.auth")
        );

        // A file named after another parser.
        fs::write(
            dir.join("other.yml"),
            "name: third\nstages: [{set: {a: b}}]\n",
        )
        .unwrap();
        let err = reg.load_dir(&dir).unwrap_err().to_string();
        assert!(err.contains("name the file third.yml"), "{err}");

        let err = reg.load_dir(&dir.join("missing")).unwrap_err();
        assert!(matches!(err, ParserError::Io { .. }));
        fs::remove_dir_all(&dir).unwrap();
    }

    /// A fresh folder under the target directory's temp space (no tempfile dependency here).
    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "vigie-parse-registry-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }
}
