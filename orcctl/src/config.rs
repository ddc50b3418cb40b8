//! orcctl's configuration file: contexts, each with endpoints, the cluster
//! CA and a client certificate (like talosconfig and kubeconfig).
//!
//! Location: `--orcconfig`, else `$ORCCONFIG`, else `~/.config/orc/config.toml`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path} is not a valid orcctl config: {msg}")]
    Parse { path: String, msg: String },
    #[error("cannot write {path}: {source}")]
    Write { path: String, source: std::io::Error },
    #[error("no orcctl config at {0}: run `orcctl cluster init <addr>` or pass --orcconfig FILE")]
    Missing(String),
    #[error("context {name:?} is not in {path}; contexts: {known}")]
    NoContext { name: String, path: String, known: String },
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub current_context: String,
    #[serde(default)]
    pub contexts: BTreeMap<String, Context>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Context {
    /// `host:port` of nodes to talk to; the first is the default target.
    pub endpoints: Vec<String>,
    pub ca: String,
    pub cert: String,
    pub key: String,
    /// The namespace commands work in (absent: `default`); `-N` overrides it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// Where the config lives, by precedence.
pub fn path(flag: Option<&Path>) -> PathBuf {
    if let Some(p) = flag {
        return p.to_path_buf();
    }
    if let Some(p) = std::env::var_os("ORCCONFIG").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/root"));
    home.join(".config/orc/config.toml")
}

impl Config {
    /// Loads the file; a missing file is an empty config.
    pub fn load_or_default(path: &Path) -> Result<Self, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => toml::from_str(&text)
                .map_err(|e| ConfigError::Parse { path: path.display().to_string(), msg: e.to_string() }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
            Err(source) => Err(ConfigError::Read { path: path.display().to_string(), source }),
        }
    }

    /// The named context, or the current one.
    pub fn context(&self, path: &Path, name: Option<&str>) -> Result<(String, &Context), ConfigError> {
        if self.contexts.is_empty() {
            return Err(ConfigError::Missing(path.display().to_string()));
        }
        let name = name.unwrap_or(&self.current_context);
        self.contexts.get(name).map(|c| (name.to_string(), c)).ok_or_else(|| ConfigError::NoContext {
            name: name.to_string(),
            path: path.display().to_string(),
            known: self.contexts.keys().cloned().collect::<Vec<_>>().join(", "),
        })
    }

    /// Saves with mode 0600 (the file holds a private key).
    pub fn save(&self, path: &Path) -> Result<(), ConfigError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let err = |source| ConfigError::Write { path: path.display().to_string(), source };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let text = toml::to_string_pretty(self)
            .map_err(|e| ConfigError::Parse { path: path.display().to_string(), msg: e.to_string() })?;
        let tmp = path.with_extension("tmp");
        let mut f =
            std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp).map_err(err)?;
        f.write_all(text.as_bytes()).map_err(err)?;
        f.sync_all().map_err(err)?;
        std::fs::rename(&tmp, path).map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_context_selection() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        let missing = Config::load_or_default(&p).unwrap();
        assert!(matches!(missing.context(&p, None), Err(ConfigError::Missing(_))));
        let mut c = Config { current_context: "a".into(), ..Default::default() };
        for n in ["a", "b"] {
            c.contexts.insert(
                n.into(),
                Context {
                    endpoints: vec![format!("{n}:7443")],
                    ca: "ca".into(),
                    cert: "c".into(),
                    key: "k".into(),
                    namespace: None,
                },
            );
        }
        c.save(&p).unwrap();
        let back = Config::load_or_default(&p).unwrap();
        assert_eq!(back, c);
        assert_eq!(back.context(&p, None).unwrap().1.endpoints, vec!["a:7443"]);
        assert_eq!(back.context(&p, Some("b")).unwrap().1.endpoints, vec!["b:7443"]);
        let e = back.context(&p, Some("z")).unwrap_err().to_string();
        assert!(e.contains("contexts: a, b"), "{e}");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, "current_context = \"a\"\nbogus = 1\n").unwrap();
        let e = Config::load_or_default(&p).unwrap_err().to_string();
        assert!(e.contains("not a valid orcctl config"), "{e}");
    }
}
