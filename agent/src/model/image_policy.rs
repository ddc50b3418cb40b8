//! The cluster's image policy: which keys must have signed the images
//! nodes run, per registry and repository pattern. Without one, any image
//! runs; with one, an image runs only when a signature over its manifest
//! digest verifies against a key of the first rule matching it
//! ([`orc_tls::image_sig`]), and then by digest.

use serde::{Deserialize, Serialize};

/// Rules a policy holds at most.
pub const MAX_RULES: usize = 64;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImagePolicy {
    pub rules: Vec<PolicyRule>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyRule {
    /// `registry/repository`, `*` standing for any run of characters
    /// (`registry:5000/team/*`, `docker.io/library/*`, `*`).
    pub pattern: String,
    /// Trusted Ed25519 public keys (PEM).
    pub keys: Vec<String>,
}

/// Whether `s` matches `pattern` (`*`: any run of characters).
pub fn glob(pattern: &str, s: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    let [first, middle @ .., last] = parts.as_slice() else { return pattern == s };
    if parts.len() == 1 {
        return pattern == s;
    }
    let Some(mut rest) = s.strip_prefix(first) else { return false };
    for m in middle {
        match rest.find(m) {
            Some(i) => rest = &rest[i + m.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

impl ImagePolicy {
    /// The first rule matching `repository` (`registry/path`), with its number (from 1).
    pub fn rule_for(&self, repository: &str) -> Option<(usize, &PolicyRule)> {
        self.rules.iter().enumerate().find(|(_, r)| glob(&r.pattern, repository)).map(|(i, r)| (i + 1, r))
    }

    /// Every rule has a pattern and keys that are Ed25519 public keys.
    pub fn check(&self) -> Result<(), String> {
        if self.rules.is_empty() {
            return Err("the policy has no rules: it would refuse every image".into());
        }
        if self.rules.len() > MAX_RULES {
            return Err(format!("the policy has {} rules: at most {MAX_RULES}", self.rules.len()));
        }
        for (i, r) in self.rules.iter().enumerate() {
            let n = i + 1;
            if r.pattern.trim().is_empty() || r.pattern.len() > 512 {
                return Err(format!("rule {n}: a pattern (1-512 characters) is required, e.g. registry:5000/team/*"));
            }
            if r.keys.is_empty() {
                return Err(format!("rule {n} ({}): no keys: it would refuse every image it matches", r.pattern));
            }
            for (j, k) in r.keys.iter().enumerate() {
                orc_tls::image_sig::public_key(k)
                    .map_err(|e| format!("rule {n} ({}), key {}: {e}", r.pattern, j + 1))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_and_the_first_matching_rule() {
        assert!(glob("registry:5000/team/*", "registry:5000/team/web"));
        assert!(glob("registry:5000/team/*", "registry:5000/team/a/b"));
        assert!(!glob("registry:5000/team/*", "registry:5000/other/web"));
        assert!(glob("*", "docker.io/library/busybox"));
        assert!(glob("*/busybox", "docker.io/library/busybox"));
        assert!(glob("docker.io/*/busy*", "docker.io/library/busybox"));
        assert!(glob("exact/name", "exact/name") && !glob("exact/name", "exact/names"));
        assert!(!glob("a*a", "a"));
        let (_, public) = orc_tls::image_sig::keygen().unwrap();
        let p = ImagePolicy {
            rules: vec![
                PolicyRule { pattern: "r/team/*".into(), keys: vec![public.clone()] },
                PolicyRule { pattern: "*".into(), keys: vec![public.clone()] },
            ],
        };
        assert_eq!(p.rule_for("r/team/web").map(|r| r.0), Some(1));
        assert_eq!(p.rule_for("r/other").map(|r| r.0), Some(2));
        p.check().unwrap();
        let bad = ImagePolicy { rules: vec![PolicyRule { pattern: "*".into(), keys: vec!["nope".into()] }] };
        assert!(bad.check().unwrap_err().contains("rule 1 (*), key 1"));
        assert!(ImagePolicy::default().check().is_err());
    }
}
