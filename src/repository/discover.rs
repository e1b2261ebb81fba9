//! Finding the models of a repository directory: `DIR/<name>/config.json` (a flat model,
//! version 1) or `DIR/<name>/<version>/config.json` (numeric versions). Entries that are
//! neither are skipped with the reason, so that one odd directory never stops the others.

use super::name;
use crate::config::VersionPolicy;
use std::path::{Path, PathBuf};

/// A model found in the repository, with the versions its policy selected (ascending).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSource {
    pub name: String,
    pub versions: Vec<VersionSource>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionSource {
    pub version: u64,
    pub dir: PathBuf,
}

/// What a scan found: the models, and each skipped entry with why.
#[derive(Debug, Default)]
pub(crate) struct Discovery {
    pub models: Vec<ModelSource>,
    pub skipped: Vec<(String, String)>,
}

/// Scans `root` (one level of models, one of versions), sorted by name. Hidden entries
/// (`.name`, among them the downloader's `.name.partial-*` directories), copies in progress
/// (`name.tmp`, `.partial`, `.part`, `.incomplete`) and plain files are passed over silently; symbolic links to directories are followed (Kubernetes volumes and
/// hand-made repositories use them; the repository is the operator's, not the client's).
/// An unreadable `root` is an error; an empty result is the caller's to judge.
pub(crate) fn discover(root: &Path, policy: VersionPolicy) -> Result<Discovery, String> {
    let mut discovery = Discovery::default();
    for (entry, path) in subdirectories(root)? {
        if let Err(why) = name::validate(&entry) {
            discovery
                .skipped
                .push((entry, format!("not a valid model name: {why}")));
            continue;
        }
        match versions(&entry, &path, &mut discovery.skipped) {
            Ok(found) => {
                let numbers: Vec<u64> = found.iter().map(|v| v.version).collect();
                let selected = policy.select(&numbers);
                let versions = found
                    .into_iter()
                    .filter(|v| selected.contains(&v.version))
                    .collect();
                discovery.models.push(ModelSource {
                    name: entry,
                    versions,
                });
            }
            Err(why) => discovery.skipped.push((entry, why)),
        }
    }
    discovery.models.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(discovery)
}

/// The versions of one model directory, ascending, with each version directory passed over
/// added to `skipped` (as `name/entry`); or why it is not a model.
fn versions(
    name: &str,
    dir: &Path,
    skipped: &mut Vec<(String, String)>,
) -> Result<Vec<VersionSource>, String> {
    let numbered: Vec<(String, PathBuf)> = subdirectories(dir)?
        .into_iter()
        .filter(|(entry, _)| entry.bytes().all(|b| b.is_ascii_digit()))
        .collect();
    let flat = dir.join("config.json").is_file();
    if flat && !numbered.is_empty() {
        return Err("holds both config.json and version directories; keep one layout".into());
    }
    if flat {
        return Ok(vec![VersionSource {
            version: 1,
            dir: dir.to_path_buf(),
        }]);
    }
    let mut found = Vec::new();
    for (entry, path) in numbered {
        let why = match name::version(&entry) {
            Some(version) if path.join("config.json").is_file() => {
                found.push(VersionSource { version, dir: path });
                continue;
            }
            Some(_) => "a version directory without config.json",
            None => "a version directory: versions are numbers from 1, without leading zeros",
        };
        skipped.push((format!("{name}/{entry}"), why.to_string()));
    }
    if found.is_empty() {
        return Err("holds no config.json and no version directory (1, 2, ...) holding one".into());
    }
    found.sort_by_key(|v| v.version);
    Ok(found)
}

/// Suffixes of directories still being copied into place (`cp -r m m.tmp && mv m.tmp ...`),
/// passed over like hidden ones: a repository is watched while it changes (hot reload), and a
/// half-copied model must never be loaded.
const IN_PROGRESS: [&str; 4] = [".tmp", ".partial", ".part", ".incomplete"];

fn in_progress(name: &str) -> bool {
    IN_PROGRESS.iter().any(|suffix| name.ends_with(suffix))
}

/// The non-hidden directories (links followed) in `dir`, by name; names that are not UTF-8
/// are kept lossily so that validation can refuse them by name.
fn subdirectories(dir: &Path) -> Result<Vec<(String, PathBuf)>, String> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if name.starts_with('.') || in_progress(&name) || !path.is_dir() {
            continue;
        }
        found.push((name, path));
    }
    found.sort();
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn model(dir: &Path) {
        fs::create_dir_all(dir).unwrap();
        fs::write(dir.join("config.json"), "{}").unwrap();
    }

    #[test]
    fn flat_and_versioned_models_are_found_and_odd_entries_skipped_with_a_reason() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        model(&r.join("flat"));
        model(&r.join("versioned/1"));
        model(&r.join("versioned/3"));
        model(&r.join("versioned/2"));
        fs::create_dir_all(r.join("versioned/04")).unwrap();
        model(&r.join("mixed"));
        model(&r.join("mixed/2"));
        fs::create_dir_all(r.join("empty")).unwrap();
        model(&r.join("bad name"));
        model(&r.join(".flat.partial-7"));
        model(&r.join("copying.tmp"));
        model(&r.join("versioned/5.partial"));
        fs::write(r.join("README"), "not a model").unwrap();

        let found = discover(r, VersionPolicy::Latest(1)).unwrap();
        let names: Vec<_> = found.models.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["flat", "versioned"]);
        assert_eq!(found.models[0].versions[0].version, 1);
        assert_eq!(found.models[0].versions[0].dir, r.join("flat"));
        assert_eq!(found.models[1].versions.len(), 1);
        assert_eq!(found.models[1].versions[0].version, 3);
        let skipped: Vec<_> = found.skipped.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(skipped, ["bad name", "empty", "mixed", "versioned/04"]);
        assert!(found.skipped[0].1.contains("valid model name"));

        let all = discover(r, VersionPolicy::All).unwrap();
        let versions: Vec<_> = all.models[1].versions.iter().map(|v| v.version).collect();
        assert_eq!(versions, [1, 2, 3]);
    }

    #[test]
    fn an_unreadable_root_is_an_error() {
        assert!(discover(Path::new("/nonexistent/repo"), VersionPolicy::All).is_err());
    }
}
