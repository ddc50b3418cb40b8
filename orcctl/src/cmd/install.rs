//! `orcctl node install`: a node in maintenance mode onto a disk. The
//! bundle is streamed to the node (or pulled by it from an image), which
//! checks the disk, verifies the bundle, writes the disk and reboots; then
//! orcctl follows it through `version` until it runs from slot A — over
//! the same pinned certificate, so the installed node is proven to be the
//! node it was.

use orc_proto::machine::{InstallChunk, InstallResponse};

use super::machine::client;
use super::status_err;
use super::upgrade::{file_stream, follow, say, version};
use crate::cli::{NodeCommand, Output};
use crate::connect::Trust;
use crate::error::CliError;
use crate::parse::parse_duration;

pub async fn run(cmd: NodeCommand, out: Output) -> Result<(), CliError> {
    let NodeCommand::Install {
        addr,
        disk,
        wipe,
        source: crate::cli::BundleSource { bundle, image, login },
        access: crate::cli::MaintenanceAccess { fingerprint, insecure, maintenance_token },
        timeout,
    } = cmd
    else {
        return Ok(());
    };
    let timeout = std::time::Duration::from_millis(parse_duration(&timeout)?);
    let auth = super::image::login(&login)?;
    if auth.is_some() && image.is_none() {
        return Err(CliError::Usage("--username goes with --image (a bundle file needs no registry)".into()));
    }
    let trust = Trust::maintenance(fingerprint, insecure)?;
    let n = addr.as_str();
    let before = version(n, &trust).await?;
    let first = InstallChunk { disk: disk.clone(), wipe, maintenance_token, ..Default::default() };
    let mut c = client(n, &trust).await?;
    let installed: InstallResponse = match (&bundle, &image) {
        (Some(b), _) => {
            let m =
                std::fs::File::open(b).map_err(|e| CliError::Usage(format!("{}: {e}", b.display()))).and_then(|f| {
                    orc_image::bundle::manifest_unverified(f)
                        .map_err(|e| CliError::Usage(format!("{}: {e}", b.display())))
                })?;
            let size = std::fs::metadata(b).map(|m| m.len()).unwrap_or_default();
            say(out, n, "sending", &format!("sending {} ({} MiB) to install on {disk}", m.version, size >> 20));
            let (rx, reader) = file_stream(b, first, |c, data| InstallChunk { data, ..c });
            let r = c.install(rx).await.map_err(status_err(n));
            if let Ok(Err(e)) = reader.await {
                return Err(CliError::Usage(e));
            }
            r?.into_inner()
        }
        (None, Some(i)) => {
            say(out, n, "pulling", &format!("the node pulls {i} to install on {disk}"));
            let ask = InstallChunk { image: i.clone(), auth, ..first };
            c.install(tokio_stream::iter([ask])).await.map_err(status_err(n))?.into_inner()
        }
        (None, None) => return Err(CliError::Usage("give --bundle FILE or --image REF".into())),
    };
    say(
        out,
        n,
        "installed",
        &format!("{} installed on {} ({}); rebooting into it", installed.version, installed.disk, installed.entry),
    );
    let want = installed.version.clone();
    follow(n, &before.boot_id, timeout, &trust, out, |v| {
        if v.boot_slot == "A" && v.os_version == want {
            return Some(Ok(format!("running {want} from slot A of its disk, with the identity it had")));
        }
        if v.boot_slot.is_empty() {
            return Some(Err(
                "it booted the live system again, not its disk: put the disk before the ISO or the network in the \
                 firmware's boot order (or remove the ISO)"
                    .into(),
            ));
        }
        None
    })
    .await
}
