//! The OCI runtime spec of a container, from the image config and the
//! request. Starts from oci-spec's defaults (the runc defaults: /proc, /dev,
//! /dev/pts, /dev/shm, /dev/mqueue, /sys, masked and read-only paths) and
//! sets what Docker users expect: Docker's default capabilities minus
//! MKNOD (the node has no device cgroup program; Podman drops it too),
//! Docker's seccomp profile, cgroup v2 limits under `/orc/<id>`.

use std::collections::BTreeMap;
use std::path::Path;

use oci_spec::runtime::{
    Capability, LinuxCapabilitiesBuilder, LinuxCpuBuilder, LinuxMemoryBuilder, LinuxNamespaceType, LinuxPidsBuilder,
    LinuxResourcesBuilder, Mount, MountBuilder, PosixRlimitBuilder, PosixRlimitType, Spec, UserBuilder,
};

use super::record::RunSpec;
use super::seccomp;
use crate::error::AgentError;
use crate::shim_contract::user::Ids;

/// How a container reaches the network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Network {
    /// The node's own stack (Docker's `--network host`).
    Host,
    /// A namespace made for it (a task's on the overlay), joined by path.
    Joined(std::path::PathBuf),
}

impl Network {
    pub fn of(req: &RunSpec) -> Self {
        match &req.netns {
            Some(p) => Self::Joined(p.clone()),
            None => Self::Host,
        }
    }
}

pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Docker's default capability set without CAP_MKNOD.
pub const CAPABILITIES: &[Capability] = &[
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::NetRaw,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

/// Open files a container may have: Docker's usual 1048576, capped by the
/// kernel's `fs.nr_open`, and by the agent's own hard limit where the agent
/// cannot raise it (no CAP_SYS_RESOURCE, as in some sandboxes): asking for
/// more than that fails the container with EPERM.
pub fn max_open_files() -> u64 {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open").ok().and_then(|s| s.trim().parse().ok());
    let want: u64 = nr_open.unwrap_or(1_048_576).min(1_048_576);
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap_or((1024, 4096));
    if hard < want && setrlimit(Resource::RLIMIT_NOFILE, soft, want).is_ok() {
        return want;
    }
    want.min(hard)
}

/// CFS period for CPU quotas.
const CPU_PERIOD: u64 = 100_000;

/// The cgroup of a container, relative to the cgroup2 root.
pub use crate::shim_contract::cgroup_path;

/// What the image says about how to run it.
#[derive(Debug, Clone, Default)]
pub struct ImageDefaults {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub workdir: String,
    pub user: String,
}

impl ImageDefaults {
    pub fn from_config(config: &[u8]) -> Result<Self, AgentError> {
        let c: oci_spec::image::ImageConfiguration =
            serde_json::from_slice(config).map_err(|e| AgentError::InvalidArgument(format!("image config: {e}")))?;
        let Some(cfg) = c.config() else { return Ok(Self::default()) };
        Ok(Self {
            entrypoint: cfg.entrypoint().clone().unwrap_or_default(),
            cmd: cfg.cmd().clone().unwrap_or_default(),
            env: cfg.env().clone().unwrap_or_default(),
            workdir: cfg.working_dir().clone().unwrap_or_default(),
            user: cfg.user().clone().unwrap_or_default(),
        })
    }
}

/// The process args: Docker's rules (a new entrypoint drops the image's cmd).
pub fn args(image: &ImageDefaults, req: &RunSpec) -> Result<Vec<String>, AgentError> {
    let (entry, cmd) = if req.process.command.is_empty() {
        (
            image.entrypoint.clone(),
            if req.process.args.is_empty() { image.cmd.clone() } else { req.process.args.clone() },
        )
    } else {
        (req.process.command.clone(), req.process.args.clone())
    };
    let args: Vec<String> = entry.into_iter().chain(cmd).collect();
    if args.is_empty() {
        return Err(AgentError::InvalidArgument(
            "the image has no entrypoint or cmd: give a command (`orcctl container run IMAGE -- CMD ARGS…`)".into(),
        ));
    }
    Ok(args)
}

/// Image env, then the request's, later keys win; PATH always set.
pub fn env(image: &ImageDefaults, req: &RunSpec) -> Vec<String> {
    let mut m: BTreeMap<String, String> = BTreeMap::new();
    let mut order = Vec::new();
    for e in image.env.iter().chain(&req.process.env) {
        let (k, v) = e.split_once('=').unwrap_or((e, ""));
        if m.insert(k.to_string(), v.to_string()).is_none() {
            order.push(k.to_string());
        }
    }
    let mut out: Vec<String> = order.iter().map(|k| format!("{k}={}", m[k])).collect();
    if !m.contains_key("PATH") {
        out.insert(0, DEFAULT_PATH.to_string());
    }
    out
}

fn spec_err(e: oci_spec::OciSpecError) -> AgentError {
    AgentError::InvalidArgument(format!("building the runtime spec: {e}"))
}

fn mount(dest: &str, typ: &str, source: &str, options: &[&str]) -> Result<Mount, AgentError> {
    MountBuilder::default()
        .destination(dest)
        .typ(typ)
        .source(source)
        .options(options.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .build()
        .map_err(spec_err)
}

pub fn generate(id: &str, rootfs: &Path, image: &ImageDefaults, req: &RunSpec, ids: Ids) -> Result<Spec, AgentError> {
    let network = Network::of(req);
    let mut spec = Spec::default();
    let own_hostname = !req.hostname.is_empty();
    spec.set_hostname(own_hostname.then(|| req.hostname.clone()));

    let mut process = spec.process().clone().unwrap_or_default();
    process.set_args(Some(args(image, req)?));
    process.set_env(Some(env(image, req)));
    let cwd = if !req.process.workdir.is_empty() {
        req.process.workdir.clone()
    } else if !image.workdir.is_empty() {
        image.workdir.clone()
    } else {
        "/".into()
    };
    if !cwd.starts_with('/') {
        return Err(AgentError::InvalidArgument(format!("working directory {cwd:?} must be an absolute path")));
    }
    process.set_cwd(cwd.into());
    process.set_user(UserBuilder::default().uid(ids.uid).gid(ids.gid).build().map_err(spec_err)?);
    // Not the agent's (inherited through the shim): containers go first when memory runs out.
    process.set_oom_score_adj(Some(0));
    // Unset, not `false`: Docker's default (setuid binaries work), and
    // libcontainer then loads the seccomp filter while the process still
    // has CAP_SYS_ADMIN; with `Some(false)` it loads it after dropping
    // capabilities and the kernel refuses it.
    process.set_no_new_privileges(None);
    let caps: std::collections::HashSet<Capability> = CAPABILITIES.iter().copied().collect();
    process.set_capabilities(Some(
        LinuxCapabilitiesBuilder::default()
            .bounding(caps.clone())
            .effective(caps.clone())
            .permitted(caps)
            .inheritable(std::collections::HashSet::new())
            .ambient(std::collections::HashSet::new())
            .build()
            .map_err(spec_err)?,
    ));
    process.set_rlimits(Some(vec![PosixRlimitBuilder::default()
        .typ(PosixRlimitType::RlimitNofile)
        .soft(max_open_files())
        .hard(max_open_files())
        .build()
        .map_err(spec_err)?]));
    spec.set_process(Some(process));

    let mut root = spec.root().clone().unwrap_or_default();
    root.set_path(rootfs.to_owned());
    root.set_readonly(Some(req.read_only));
    spec.set_root(Some(root));

    let mut mounts = spec.mounts().clone().unwrap_or_default();
    for m in &req.mounts {
        let ro = if m.read_only { "ro" } else { "rw" };
        mounts.push(match m.kind.as_str() {
            "tmpfs" => mount(&m.target, "tmpfs", "tmpfs", &["nosuid", "nodev", ro])?,
            _ => {
                if !Path::new(&m.source).exists() {
                    return Err(AgentError::InvalidArgument(format!(
                        "bind mount source {} does not exist on the node",
                        m.source
                    )));
                }
                mount(&m.target, "bind", &m.source, &["rbind", "rprivate", ro])?
            }
        });
    }
    spec.set_mounts(Some(mounts));

    let mut linux = spec.linux().clone().unwrap_or_default();
    let namespaces = linux
        .namespaces()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|ns| match &network {
            // The node's network and (unless it has its own) its hostname:
            // as Docker's --network host.
            Network::Host => match ns.typ() {
                LinuxNamespaceType::Network => false,
                LinuxNamespaceType::Uts => own_hostname,
                _ => true,
            },
            Network::Joined(_) => true,
        })
        .map(|mut ns| {
            if let (Network::Joined(path), LinuxNamespaceType::Network) = (&network, ns.typ()) {
                ns.set_path(Some(path.clone()));
            }
            ns
        })
        .collect();
    linux.set_namespaces(Some(namespaces));
    linux.set_cgroups_path(Some(cgroup_path(id).into()));
    let mut resources = LinuxResourcesBuilder::default();
    if req.limits.memory > 0 {
        let m = req.limits.memory as i64;
        resources = resources.memory(LinuxMemoryBuilder::default().limit(m).swap(m).build().map_err(spec_err)?);
    }
    if req.limits.cpus > 0.0 {
        let quota = (req.limits.cpus * CPU_PERIOD as f64).round().max(1000.0) as i64;
        resources =
            resources.cpu(LinuxCpuBuilder::default().quota(quota).period(CPU_PERIOD).build().map_err(spec_err)?);
    }
    // No limit asked for: the default, so one fork bomb cannot take the
    // node's pids (where the pids controller is there to enforce it).
    if let Some(pids) = Some(req.limits.pids).filter(|p| *p > 0).or_else(default_pids_limit) {
        resources = resources.pids(LinuxPidsBuilder::default().limit(pids).build().map_err(spec_err)?);
    }
    linux.set_resources(Some(resources.build().map_err(spec_err)?));
    let mut masked = linux.masked_paths().clone().unwrap_or_default();
    masked.extend(EXTRA_MASKED.iter().map(|p| p.to_string()));
    linux.set_masked_paths(Some(masked));
    linux.set_seccomp(Some(seccomp::default_profile().map_err(spec_err)?));
    spec.set_linux(Some(linux));
    Ok(spec)
}

/// Masked beyond the OCI defaults (which are Docker's older list): the
/// rest of Docker's, and the kernel command line, which carries the join
/// token (`orc.join=`) and other node settings no container should read.
pub const EXTRA_MASKED: &[&str] = &["/proc/cmdline", "/proc/interrupts", "/sys/devices/virtual/powercap"];

/// Processes a container may have when its spec sets no limit.
pub const DEFAULT_PIDS_LIMIT: i64 = 4096;

/// [`DEFAULT_PIDS_LIMIT`] where cgroup v2 has the pids controller (always on
/// a node; not on a cgroup v1 hybrid host, where nothing could enforce it).
pub fn default_pids_limit() -> Option<i64> {
    let controllers = std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers").unwrap_or_default();
    controllers.split_whitespace().any(|c| c == "pids").then_some(DEFAULT_PIDS_LIMIT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::record::Process;

    fn image() -> ImageDefaults {
        ImageDefaults {
            entrypoint: vec!["/entry".into()],
            cmd: vec!["serve".into(), "--port=80".into()],
            env: vec!["PATH=/bin".into(), "A=image".into()],
            workdir: "/srv".into(),
            user: String::new(),
        }
    }

    #[test]
    fn args_follow_docker_rules() {
        let req = RunSpec::default();
        assert_eq!(args(&image(), &req).unwrap(), ["/entry", "serve", "--port=80"]);
        let req =
            RunSpec { process: Process { args: vec!["debug".into()], ..Default::default() }, ..Default::default() };
        assert_eq!(args(&image(), &req).unwrap(), ["/entry", "debug"]);
        let req = RunSpec {
            process: Process { command: vec!["/bin/sh".into()], ..Default::default() },
            ..Default::default()
        };
        assert_eq!(args(&image(), &req).unwrap(), ["/bin/sh"]);
        let err = args(&ImageDefaults::default(), &RunSpec::default()).unwrap_err();
        assert!(err.to_string().contains("give a command"));
    }

    #[test]
    fn env_merges_with_request_winning() {
        let req = RunSpec {
            process: Process { env: vec!["A=req".into(), "B=2".into()], ..Default::default() },
            ..Default::default()
        };
        assert_eq!(env(&image(), &req), ["PATH=/bin", "A=req", "B=2"]);
        assert_eq!(env(&ImageDefaults::default(), &RunSpec::default()), [DEFAULT_PATH]);
    }

    #[test]
    fn spec_has_limits_caps_seccomp_and_host_network() {
        let req = RunSpec {
            read_only: true,
            limits: super::super::record::Limits { cpus: 0.5, memory: 64 << 20, pids: 100 },
            mounts: vec![super::super::record::MountSpec {
                kind: "tmpfs".into(),
                target: "/tmp".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let s = generate("abc", Path::new("/r"), &image(), &req, Ids { uid: 33, gid: 34 }).unwrap();
        let linux = s.linux().as_ref().unwrap();
        assert_eq!(linux.cgroups_path().as_ref().unwrap(), Path::new("/orc/abc"));
        let res = linux.resources().as_ref().unwrap();
        assert_eq!(res.memory().as_ref().unwrap().limit(), Some(64 << 20));
        assert_eq!(res.cpu().as_ref().unwrap().quota(), Some(50_000));
        assert_eq!(res.pids().as_ref().unwrap().limit(), 100);
        let ns: Vec<_> = linux.namespaces().as_ref().unwrap().iter().map(|n| n.typ()).collect();
        assert!(!ns.contains(&LinuxNamespaceType::Network));
        assert!(ns.contains(&LinuxNamespaceType::Pid) && ns.contains(&LinuxNamespaceType::Mount));
        // A task on the overlay joins the namespace made for it, by path.
        let joined = RunSpec { netns: Some("/run/orc/net/t1/netns".into()), hostname: "t1".into(), ..req.clone() };
        let s2 = generate("abc", Path::new("/r"), &image(), &joined, Ids { uid: 33, gid: 34 }).unwrap();
        let net = s2
            .linux()
            .as_ref()
            .unwrap()
            .namespaces()
            .as_ref()
            .unwrap()
            .iter()
            .find(|n| n.typ() == LinuxNamespaceType::Network)
            .cloned();
        assert_eq!(net.and_then(|n| n.path().clone()), Some("/run/orc/net/t1/netns".into()));
        assert_eq!(s2.hostname().as_deref(), Some("t1"));
        let seccomp = linux.seccomp().as_ref().unwrap();
        assert!(seccomp.syscalls().as_ref().unwrap()[0].names().contains(&"read".to_string()));
        assert!(!seccomp.syscalls().as_ref().unwrap()[0].names().contains(&"mount".to_string()));
        let p = s.process().as_ref().unwrap();
        assert_eq!((p.user().uid(), p.user().gid()), (33, 34));
        assert_eq!(p.cwd(), Path::new("/srv"));
        let caps = p.capabilities().as_ref().unwrap().bounding().as_ref().unwrap();
        assert!(
            caps.contains(&Capability::NetBindService)
                && !caps.contains(&Capability::Mknod)
                && !caps.contains(&Capability::SysAdmin)
        );
        assert_eq!(s.root().as_ref().unwrap().readonly(), Some(true));
        assert!(s.mounts().as_ref().unwrap().iter().any(|m| m.destination() == Path::new("/tmp")));
        assert!(linux.masked_paths().as_ref().unwrap().contains(&"/proc/kcore".to_string()));
        assert!(linux.masked_paths().as_ref().unwrap().contains(&"/proc/cmdline".to_string()));
        assert_eq!(s.process().as_ref().unwrap().oom_score_adj(), Some(0));
        assert!(linux.readonly_paths().as_ref().unwrap().contains(&"/proc/sys".to_string()));
        // No limit asked for: the default one.
        let s = generate("a", Path::new("/r"), &image(), &RunSpec::default(), Ids { uid: 0, gid: 0 }).unwrap();
        let res = s.linux().as_ref().unwrap().resources().clone().unwrap();
        assert_eq!(res.pids().as_ref().map(|p| p.limit()), default_pids_limit());
    }

    #[test]
    fn relative_workdir_and_missing_bind_source_are_refused() {
        let req = RunSpec { process: Process { workdir: "srv".into(), ..Default::default() }, ..Default::default() };
        assert!(generate("a", Path::new("/r"), &image(), &req, Ids { uid: 0, gid: 0 }).is_err());
        let req = RunSpec {
            mounts: vec![super::super::record::MountSpec {
                kind: "bind".into(),
                source: "/nonexistent/x".into(),
                target: "/x".into(),
                read_only: false,
            }],
            ..Default::default()
        };
        let err = generate("a", Path::new("/r"), &image(), &req, Ids { uid: 0, gid: 0 }).unwrap_err();
        assert!(err.to_string().contains("does not exist on the node"));
    }
}
