//! One rescan of the repository: what is on disk now (with a fingerprint per version
//! directory), and what that means for the served set: which versions to load, which to keep,
//! which to retire. Pure functions over values, so that the rules are tested without a model.

use crate::config::VersionPolicy;
use crate::engine::Engine;
use crate::repository::{discover, Served, ServedModel, ServedVersion, VersionState};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

/// The non-hidden files of a version directory with their sizes and modification times,
/// sorted: a file rewritten, replaced or added changes it, and no weights are read.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(super) struct Fingerprint(Vec<(String, u64, Option<SystemTime>)>);

/// Reads `dir`'s fingerprint, following links (a repository of links to model files changes
/// when their targets do).
pub(super) fn fingerprint(dir: &Path) -> std::io::Result<Fingerprint> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        // A file removed between the listing and this call is a change the next scan sees.
        let Ok(meta) = std::fs::metadata(entry.path()) else {
            continue;
        };
        if meta.is_file() {
            files.push((name, meta.len(), meta.modified().ok()));
        }
    }
    files.sort();
    Ok(Fingerprint(files))
}

/// One version found on disk.
#[derive(Debug, Clone)]
pub(super) struct Found {
    pub version: u64,
    pub dir: PathBuf,
    pub fingerprint: Fingerprint,
}

/// What one scan found: each model's selected versions, and the entries skipped with why.
#[derive(Debug, Default)]
pub(super) struct Scan {
    pub models: BTreeMap<String, Vec<Found>>,
    pub skipped: Vec<(String, String)>,
}

/// Scans `root` as start-up does, then fingerprints every selected version. Blocking.
pub(super) fn scan(root: &Path, policy: VersionPolicy) -> Result<Scan, String> {
    let discovery = discover(root, policy)?;
    let mut scan = Scan {
        skipped: discovery.skipped,
        ..Scan::default()
    };
    for model in discovery.models {
        let mut found = Vec::new();
        for v in model.versions {
            match fingerprint(&v.dir) {
                Ok(fingerprint) => found.push(Found {
                    version: v.version,
                    dir: v.dir,
                    fingerprint,
                }),
                // Vanished since the listing (a rename in progress): the next scan decides.
                Err(error) => scan.skipped.push((
                    format!("{}/{}", model.name, v.version),
                    format!("cannot list {}: {error}", v.dir.display()),
                )),
            }
        }
        if !found.is_empty() {
            scan.models.insert(model.name, found);
        }
    }
    Ok(scan)
}

/// A version to load, and the fingerprint its files had before loading began.
#[derive(Debug, Clone)]
pub(super) struct Load {
    pub name: String,
    pub version: u64,
    pub dir: PathBuf,
    pub fingerprint: Fingerprint,
}

/// The outcome of [`plan`]: the served set to publish at once, the loads to run, and each
/// model's versions on disk (what [`retire`] keeps once the loads are done).
pub(super) struct Plan {
    pub next: Served,
    pub loads: Vec<Load>,
    pub targets: HashMap<String, BTreeSet<u64>>,
}

/// What the served set becomes for `scan`. New versions are published `LOADING`; changed
/// ones (another fingerprint than `loaded` records, or `force`d) are reloaded while a ready
/// one keeps serving its old files; versions gone from disk that do not serve are dropped now,
/// ready ones only by [`retire`]. Models in `unloaded` stay unloaded.
pub(super) fn plan(
    current: &Served,
    scan: &Scan,
    loaded: &HashMap<(String, u64), Fingerprint>,
    unloaded: &BTreeSet<String>,
    force: Option<&str>,
) -> Plan {
    let names: BTreeSet<&str> = current
        .models
        .iter()
        .map(|m| m.name.as_str())
        .chain(scan.models.keys().map(String::as_str))
        .collect();
    let mut next = Served {
        models: Vec::new(),
        default: current.default.clone(),
    };
    let mut loads = Vec::new();
    let mut targets = HashMap::new();
    for name in names {
        let mut versions: Vec<ServedVersion> = current
            .model(name)
            .map(|m| m.versions.clone())
            .unwrap_or_default();
        // Skipped with a reason (e.g. a version directory added to a flat model): an
        // operator's slip to fix, not a removal; what it serves stays as it is.
        if scan.skipped.iter().any(|(entry, _)| entry == name) {
            if !versions.is_empty() {
                targets.insert(
                    name.to_string(),
                    versions.iter().map(|v| v.version).collect(),
                );
                next.models.push(ServedModel {
                    name: name.to_string(),
                    versions,
                });
            }
            continue;
        }
        let found = scan.models.get(name);
        let on_disk: BTreeSet<u64> = found.into_iter().flatten().map(|f| f.version).collect();
        // Gone from disk and not serving: nothing to keep.
        versions
            .retain(|v| on_disk.contains(&v.version) || matches!(v.state, VersionState::Ready(_)));
        for f in found.into_iter().flatten() {
            let slot = versions.iter_mut().find(|v| v.version == f.version);
            if unloaded.contains(name) {
                if slot.is_none() {
                    versions.push(slot_of(f, VersionState::Unloaded));
                }
                continue;
            }
            let load = Load {
                name: name.to_string(),
                version: f.version,
                dir: f.dir.clone(),
                fingerprint: f.fingerprint.clone(),
            };
            match slot {
                None => {
                    versions.push(slot_of(f, VersionState::Loading));
                    loads.push(load);
                }
                Some(slot) => {
                    let changed = loaded.get(&(name.to_string(), f.version))
                        != Some(&f.fingerprint)
                        || slot.dir != f.dir;
                    let unloaded_before = matches!(slot.state, VersionState::Unloaded);
                    if changed || force == Some(name) || unloaded_before {
                        if !matches!(slot.state, VersionState::Ready(_)) {
                            slot.state = VersionState::Loading;
                            slot.dir = f.dir.clone();
                        }
                        loads.push(load);
                    }
                }
            }
        }
        if found.is_some() {
            targets.insert(name.to_string(), on_disk);
        }
        if !versions.is_empty() {
            versions.sort_by_key(|v| v.version);
            next.models.push(ServedModel {
                name: name.to_string(),
                versions,
            });
        }
    }
    Plan {
        next,
        loads,
        targets,
    }
}

fn slot_of(found: &Found, state: VersionState) -> ServedVersion {
    ServedVersion {
        version: found.version,
        dir: found.dir.clone(),
        state,
        reload_error: None,
    }
}

/// Once the loads are done: ready versions no longer on disk (or no longer selected by the
/// version policy) leave the served set, and their engines are returned for release, but only
/// where that takes nothing away: when their model has a ready version on disk, or when the
/// whole model left the repository and is not the default model (which `/predict` needs).
pub(super) fn retire(
    current: &Served,
    targets: &HashMap<String, BTreeSet<u64>>,
) -> (Served, Vec<(String, u64, Arc<Engine>)>) {
    let mut next = current.clone();
    let mut retired = Vec::new();
    for model in &mut next.models {
        let target = targets.get(&model.name);
        let wanted = |v: &ServedVersion| target.is_some_and(|t| t.contains(&v.version));
        let serves_wanted = model
            .versions
            .iter()
            .any(|v| wanted(v) && matches!(v.state, VersionState::Ready(_)));
        let is_default = current.default.as_deref() == Some(model.name.as_str());
        let release = serves_wanted || (target.is_none() && !is_default);
        if !release {
            continue;
        }
        let (keep, gone): (Vec<_>, Vec<_>) = model.versions.drain(..).partition(|v| wanted(v));
        model.versions = keep;
        for v in gone {
            if let VersionState::Ready(engine) = v.state {
                retired.push((model.name.clone(), v.version, engine));
            }
        }
    }
    next.models.retain(|m| !m.versions.is_empty());
    (next, retired)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp(size: u64) -> Fingerprint {
        Fingerprint(vec![("model.safetensors".into(), size, None)])
    }

    fn found(versions: &[(u64, u64)]) -> Vec<Found> {
        versions
            .iter()
            .map(|&(version, size)| Found {
                version,
                dir: PathBuf::from(format!("/repo/m/{version}")),
                fingerprint: fp(size),
            })
            .collect()
    }

    fn served(states: Vec<(u64, VersionState)>) -> Served {
        Served {
            models: vec![ServedModel {
                name: "m".into(),
                versions: states
                    .into_iter()
                    .map(|(version, state)| ServedVersion {
                        version,
                        dir: PathBuf::from(format!("/repo/m/{version}")),
                        state,
                        reload_error: None,
                    })
                    .collect(),
            }],
            default: Some("m".into()),
        }
    }

    fn states(served: &Served) -> Vec<(u64, &'static str)> {
        served.models[0]
            .versions
            .iter()
            .map(|v| (v.version, v.state.name()))
            .collect()
    }

    #[test]
    fn new_and_changed_versions_load_and_unchanged_failures_are_not_retried() {
        let current = served(vec![(1, VersionState::Failed("truncated".into()))]);
        let mut scan = Scan::default();
        scan.models.insert("m".into(), found(&[(1, 10), (2, 20)]));
        let mut loaded = HashMap::new();
        loaded.insert(("m".to_string(), 1), fp(10));
        let none = BTreeSet::new();

        let p = plan(&current, &scan, &loaded, &none, None);
        assert_eq!(states(&p.next), [(1, "FAILED"), (2, "LOADING")]);
        let loads: Vec<u64> = p.loads.iter().map(|l| l.version).collect();
        assert_eq!(loads, [2]);
        assert_eq!(p.targets["m"], BTreeSet::from([1, 2]));

        // The failed version's files changed: it is tried again.
        scan.models.insert("m".into(), found(&[(1, 11)]));
        let p = plan(&current, &scan, &loaded, &none, None);
        assert_eq!(states(&p.next), [(1, "LOADING")]);
        assert_eq!(p.loads.len(), 1);
        // Unchanged but forced (POST .../load): tried again too.
        scan.models.insert("m".into(), found(&[(1, 10)]));
        assert_eq!(
            plan(&current, &scan, &loaded, &none, Some("m")).loads.len(),
            1
        );
        assert!(plan(&current, &scan, &loaded, &none, Some("x"))
            .loads
            .is_empty());
    }

    #[test]
    fn unloaded_models_stay_unloaded_and_versions_gone_from_disk_leave() {
        let current = served(vec![
            (1, VersionState::Failed("bad".into())),
            (2, VersionState::Unloaded),
        ]);
        let mut scan = Scan::default();
        scan.models.insert("m".into(), found(&[(2, 20), (3, 30)]));
        let unloaded = BTreeSet::from(["m".to_string()]);
        let p = plan(&current, &scan, &HashMap::new(), &unloaded, None);
        assert_eq!(states(&p.next), [(2, "UNLOADED"), (3, "UNLOADED")]);
        assert!(p.loads.is_empty());

        // A model gone from disk with nothing ready is dropped; its retirement is a no-op.
        let p = plan(
            &current,
            &Scan::default(),
            &HashMap::new(),
            &BTreeSet::new(),
            None,
        );
        assert!(p.next.models.is_empty());
        assert!(p.targets.is_empty());
        let (next, retired) = retire(&current, &p.targets);
        assert!(retired.is_empty());
        assert_eq!(states(&next), [(1, "FAILED"), (2, "UNLOADED")]);
    }
}
