//! Resolves the kernel modules a node needs, with their dependencies, into a
//! load order (dependencies first), from a `modules.dep` made by `depmod -b`.

use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ModulesError {
    /// a wanted module is neither in modules.dep nor built in
    #[error("kernel module {0:?} is neither built into the kernel nor in modules.dep; check kernel-config/modules")]
    Unknown(String),
}

/// Module name as the kernel knows it: file stem with `-` folded to `_`.
pub fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = file.split(".ko").next().unwrap_or(file);
    stem.replace('-', "_")
}

/// The parsed `modules.dep`: module name → (path, direct and indirect deps).
pub struct ModuleDeps {
    modules: BTreeMap<String, (String, Vec<String>)>,
    builtin: BTreeSet<String>,
}

impl ModuleDeps {
    /// `dep` is the text of `modules.dep`, `builtin` that of `modules.builtin`.
    pub fn parse(dep: &str, builtin: &str) -> Self {
        let modules = dep
            .lines()
            .filter_map(|l| l.split_once(':'))
            .map(|(path, deps)| {
                let deps = deps.split_whitespace().map(str::to_string).collect();
                (module_name(path), (path.to_string(), deps))
            })
            .collect();
        let builtin = builtin.lines().map(module_name).collect();
        Self { modules, builtin }
    }

    /// Paths (relative to `/lib/modules/<ver>/`) to load, dependencies first,
    /// each once. Built-in modules are skipped.
    pub fn load_order(&self, wanted: &[&str]) -> Result<Vec<String>, ModulesError> {
        let mut order = Vec::new();
        let mut seen = BTreeSet::new();
        for w in wanted {
            let name = module_name(w);
            if self.builtin.contains(&name) && !self.modules.contains_key(&name) {
                continue;
            }
            self.visit(&name, &mut seen, &mut order)?;
        }
        Ok(order)
    }

    fn visit(&self, name: &str, seen: &mut BTreeSet<String>, order: &mut Vec<String>) -> Result<(), ModulesError> {
        if !seen.insert(name.to_string()) {
            return Ok(());
        }
        let (path, deps) = self.modules.get(name).ok_or_else(|| ModulesError::Unknown(name.to_string()))?;
        for d in deps {
            self.visit(&module_name(d), seen, order)?;
        }
        order.push(path.clone());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEP: &str = "kernel/fs/ext4/ext4.ko: kernel/fs/jbd2/jbd2.ko kernel/fs/mbcache.ko kernel/lib/crc16.ko\n\
kernel/fs/jbd2/jbd2.ko:\nkernel/fs/mbcache.ko:\nkernel/lib/crc16.ko:\n\
kernel/drivers/md/dm-verity.ko: kernel/drivers/md/dm-bufio.ko kernel/drivers/md/dm-mod.ko\n\
kernel/drivers/md/dm-bufio.ko:\nkernel/drivers/md/dm-mod.ko:\n";

    #[test]
    fn deps_first_each_once() {
        let m = ModuleDeps::parse(DEP, "kernel/fs/proc.ko\n");
        let order = m.load_order(&["ext4", "dm_verity", "jbd2", "proc"]).unwrap();
        assert_eq!(
            order,
            vec![
                "kernel/fs/jbd2/jbd2.ko",
                "kernel/fs/mbcache.ko",
                "kernel/lib/crc16.ko",
                "kernel/fs/ext4/ext4.ko",
                "kernel/drivers/md/dm-bufio.ko",
                "kernel/drivers/md/dm-mod.ko",
                "kernel/drivers/md/dm-verity.ko",
            ]
        );
    }

    #[test]
    fn unknown_module_is_named() {
        let m = ModuleDeps::parse(DEP, "");
        assert_eq!(m.load_order(&["nope"]), Err(ModulesError::Unknown("nope".into())));
    }

    #[test]
    fn names_fold_dashes() {
        assert_eq!(module_name("kernel/drivers/md/dm-verity.ko"), "dm_verity");
        assert_eq!(module_name("dm-verity"), "dm_verity");
    }
}
