//! Kernel command line keys understood by `orc-init`. The build writes them and
//! PID 1 reads them, so both take the names from here.

/// Block device holding the erofs root image followed by its dm-verity hash tree.
pub const ROOT: &str = "orc.root";
/// `<root hash hex>:<salt hex>:<data blocks>` of the root image (4 KiB blocks,
/// hash tree right after the data). Without it the root is mounted unverified.
pub const VERITY: &str = "orc.verity";
/// Block device for STATE. A blank device named here is formatted on first boot;
/// without it, the disk labelled [`STATE_LABEL`] is used, and tmpfs when none is.
pub const STATE: &str = "orc.state";
/// `IFACE:ADDR/PREFIX[:GATEWAY]`, may repeat; other interfaces use DHCP.
pub const IP: &str = "orc.ip";
/// Hostname; defaults to the DHCP-provided one, then `orc-<mac suffix>`.
pub const HOSTNAME: &str = "orc.hostname";
/// `TOKEN@ADDR`: join a cluster by itself on first boot.
pub const JOIN: &str = "orc.join";
/// The address other managers reach this node's API at (`ip:port`).
pub const ADVERTISE: &str = "orc.advertise";
/// Registries the node reaches over plain HTTP: `host:port[,host:port…]`.
pub const INSECURE_REGISTRIES: &str = "orc.insecure_registries";
/// The most bytes one image may unpack to on the node.
pub const MAX_IMAGE_SIZE: &str = "orc.max_image_size";
/// What whoever bootstraps or joins the node by hand must present.
pub const MAINTENANCE_TOKEN: &str = "orc.maintenance_token";
/// NTP servers (`host[:port]`, comma-separated); before those DHCP offers.
pub const NTP: &str = "orc.ntp";
/// A live node installs itself to this disk at start (`/dev/disk/by-id/…`
/// or `/dev/NAME`; blank disks only), from the bundle in [`INSTALL_IMAGE`].
pub const INSTALL: &str = "orc.install";
/// The image holding the bundle [`INSTALL`] installs (`REGISTRY/REPO:TAG`).
pub const INSTALL_IMAGE: &str = "orc.install_image";

/// The filesystem label of the STATE partition.
pub const STATE_LABEL: &str = "ORC_STATE";
/// dm-verity data and hash block size used by the image.
pub const VERITY_BLOCK_SIZE: u64 = 4096;
/// Where the STATE template (a small gzip'd ext4 image) lives in the initramfs.
pub const STATE_TEMPLATE_PATH: &str = "/etc/orc/state.ext4.gz";
/// Where PID 1 leaves it after switching root, for the agent's installer
/// (the initramfs is gone by then).
pub const STATE_TEMPLATE_RUN: &str = "/run/orc/state.ext4.gz";
/// Where the module load list lives in the initramfs (one path per line, in
/// order): what the root, STATE, the network and the agent's API need.
pub const MODULE_LIST_PATH: &str = "/etc/orc/modules";
/// The modules loaded after the agent is started, while it starts
/// (containers and their networking; same format, none of the first list).
pub const LATE_MODULE_LIST_PATH: &str = "/etc/orc/modules.late";
/// Present (in orc-init's run directory, `/run/orc`) while orc-init loads
/// the late modules: whoever needs them (a container start) waits until it
/// is gone.
pub const LATE_MODULES_PENDING: &str = "modules.pending";
/// Where the agent binary lives on the root filesystem.
pub const AGENT_PATH: &str = "/usr/bin/orc-agent";
