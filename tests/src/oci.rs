//! A small real image for the tests: Debian's static busybox in one layer,
//! a web root and a whiteout in a second, with an OCI config. Written as an
//! OCI image layout (for `image load`) or pushed to a registry.

use std::io::Write;
use std::path::Path;

use sha2::{Digest, Sha256};

pub const LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
pub const BUSYBOX: &str = "/bin/busybox";
/// What the image's web root serves.
pub const INDEX_HTML: &str = "hello from an orc container\n";

const APPLETS: &[&str] = &[
    "sh", "true", "false", "echo", "cat", "sleep", "ls", "httpd", "yes", "dd", "head", "wc", "id", "env", "ps", "kill",
    "mkdir", "rm", "touch", "hostname", "grep", "seq", "nproc", "stty", "tty", "wget", "tail", "tr", "[", "test",
    // Networking checks (busybox-static's wget crashes in name lookups; nc does not look up literals).
    "nc", "ping", "printf", "nslookup",
];

pub struct Image {
    pub config: Vec<u8>,
    /// gzip'd tars, bottom first.
    pub layers: Vec<Vec<u8>>,
}

pub fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

fn header(path: &str, kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    let _ = h.set_path(path);
    h.set_cksum();
    h
}

struct Layer {
    tar: tar::Builder<Vec<u8>>,
}

impl Layer {
    fn new() -> Self {
        Self { tar: tar::Builder::new(Vec::new()) }
    }
    fn dir(&mut self, path: &str, mode: u32) -> anyhow::Result<()> {
        let h = header(path, tar::EntryType::Directory, mode, 0);
        self.tar.append(&h, std::io::empty())?;
        Ok(())
    }
    fn file(&mut self, path: &str, mode: u32, data: &[u8]) -> anyhow::Result<()> {
        let h = header(path, tar::EntryType::Regular, mode, data.len() as u64);
        self.tar.append(&h, data)?;
        Ok(())
    }
    fn symlink(&mut self, path: &str, target: &str) -> anyhow::Result<()> {
        let mut h = header(path, tar::EntryType::Symlink, 0o777, 0);
        h.set_link_name(target)?;
        h.set_cksum();
        self.tar.append(&h, std::io::empty())?;
        Ok(())
    }
    /// (gzip'd blob, diff id).
    fn finish(self) -> anyhow::Result<(Vec<u8>, String)> {
        let plain = self.tar.into_inner()?;
        let diff_id = sha256(&plain);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&plain)?;
        Ok((gz.finish()?, diff_id))
    }
}

/// An image of one layer holding `files` (path, contents) and nothing
/// else: how an OS upgrade bundle is published (`FROM scratch`, `COPY`).
pub fn files_only(files: &[(&str, Vec<u8>)]) -> anyhow::Result<Image> {
    let mut l = Layer::new();
    for (path, data) in files {
        l.file(path.trim_start_matches('/'), 0o644, data)?;
    }
    let (blob, diff_id) = l.finish()?;
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }))?;
    Ok(Image { config, layers: vec![blob] })
}

/// busybox with a shell, httpd, and a web root at /www; `extra` bytes of
/// incompressible filler in a third layer (for throughput measurements).
pub fn busybox(extra: usize) -> anyhow::Result<Image> {
    busybox_with(extra, 0)
}

/// [`busybox`] with a layer of `files` (path in the image, contents;
/// executable) on top: tools for benchmarks.
pub fn busybox_plus(files: &[(String, Vec<u8>)]) -> anyhow::Result<Image> {
    build(0, 0, files)
}

/// [`busybox`] with `tiny` more layers on top, layer `i` adding `/layers/i`
/// (for images of many layers).
pub fn busybox_with(extra: usize, tiny: usize) -> anyhow::Result<Image> {
    build(extra, tiny, &[])
}

fn build(extra: usize, tiny: usize, files: &[(String, Vec<u8>)]) -> anyhow::Result<Image> {
    let bb = std::fs::read(BUSYBOX)
        .map_err(|e| anyhow::anyhow!("{BUSYBOX}: {e} (Debian's busybox-static; `cargo xtask test` installs it)"))?;
    let mut base = Layer::new();
    for d in ["bin/", "etc/", "www/", "root/"] {
        base.dir(d, 0o755)?;
    }
    base.dir("tmp/", 0o1777)?;
    base.file("bin/busybox", 0o755, &bb)?;
    for a in APPLETS {
        base.symlink(&format!("bin/{a}"), "busybox")?;
    }
    base.file(
        "etc/passwd",
        0o644,
        b"root:x:0:0:root:/root:/bin/sh\nwww:x:33:33:www:/www:/bin/false\nnobody:x:65534:65534:nobody:/:/bin/false\n",
    )?;
    base.file("etc/group", 0o644, b"root:x:0:\nwww:x:33:\nnogroup:x:65534:\n")?;
    base.file("etc/motd", 0o644, b"removed by the next layer\n")?;
    let mut app = Layer::new();
    app.dir("www/", 0o755)?;
    app.file("www/index.html", 0o644, INDEX_HTML.as_bytes())?;
    app.dir("etc/", 0o755)?;
    app.file("etc/.wh.motd", 0o644, b"")?;
    let mut layers = vec![base.finish()?, app.finish()?];
    if extra > 0 {
        let mut filler = Layer::new();
        let mut data = vec![0u8; extra];
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for b in data.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        filler.file("filler.bin", 0o644, &data)?;
        layers.push(filler.finish()?);
    }
    if !files.is_empty() {
        let mut l = Layer::new();
        let mut dirs: Vec<String> = Vec::new();
        for (path, _) in files {
            let mut p = std::path::Path::new(path.trim_start_matches('/')).parent();
            while let Some(d) = p.filter(|d| !d.as_os_str().is_empty()) {
                dirs.push(format!("{}/", d.display()));
                p = d.parent();
            }
        }
        dirs.sort();
        dirs.dedup();
        for d in &dirs {
            l.dir(d, 0o755)?;
        }
        for (path, data) in files {
            l.file(path.trim_start_matches('/'), 0o755, data)?;
        }
        layers.push(l.finish()?);
    }
    for i in 0..tiny {
        let mut l = Layer::new();
        l.dir("layers/", 0o755)?;
        l.file(&format!("layers/{i}"), 0o644, format!("{i}\n").as_bytes())?;
        layers.push(l.finish()?);
    }
    let diff_ids: Vec<&str> = layers.iter().map(|(_, d)| d.as_str()).collect();
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Env": ["PATH=/bin", "ORC_TEST=image"],
            "Cmd": ["sh"],
            "WorkingDir": "/",
        },
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))?;
    Ok(Image { config, layers: layers.into_iter().map(|(b, _)| b).collect() })
}

impl Image {
    pub fn manifest(&self) -> anyhow::Result<Vec<u8>> {
        let desc = |media: &str, data: &[u8]| serde_json::json!({"mediaType": media, "digest": sha256(data), "size": data.len()});
        Ok(serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST_MEDIA_TYPE,
            "config": desc(CONFIG_MEDIA_TYPE, &self.config),
            "layers": self.layers.iter().map(|l| desc(LAYER_MEDIA_TYPE, l)).collect::<Vec<_>>(),
        }))?)
    }

    /// An OCI image layout in `dir`, its image named `ref_name`.
    pub fn write_layout(&self, dir: &Path, ref_name: &str) -> anyhow::Result<()> {
        let blobs = dir.join("blobs/sha256");
        std::fs::create_dir_all(&blobs)?;
        let manifest = self.manifest()?;
        for b in [&self.config, &manifest].into_iter().chain(self.layers.iter()) {
            std::fs::write(blobs.join(sha256(b).trim_start_matches("sha256:")), b)?;
        }
        std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        let index = serde_json::json!({
            "schemaVersion": 2,
            "manifests": [{
                "mediaType": MANIFEST_MEDIA_TYPE,
                "digest": sha256(&manifest),
                "size": manifest.len(),
                "annotations": {"org.opencontainers.image.ref.name": ref_name},
            }],
        });
        std::fs::write(dir.join("index.json"), serde_json::to_vec(&index)?)?;
        Ok(())
    }

    /// The layout as one tar archive (what `orcctl image load` takes).
    pub fn layout_tar(&self, ref_name: &str) -> anyhow::Result<Vec<u8>> {
        let dir = tempfile::tempdir()?;
        self.write_layout(dir.path(), ref_name)?;
        let mut tar = tar::Builder::new(Vec::new());
        tar.append_dir_all(".", dir.path())?;
        Ok(tar.into_inner()?)
    }
}

impl Image {
    /// The image as `docker save` writes it: `manifest.json` with
    /// `RepoTags`, the config, and uncompressed `<id>/layer.tar` files.
    pub fn docker_save_tar(&self, repo_tag: &str) -> anyhow::Result<Vec<u8>> {
        use std::io::Read;
        let mut tar = tar::Builder::new(Vec::new());
        let mut add = |path: &str, data: &[u8]| -> anyhow::Result<()> {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Regular);
            tar.append_data(&mut h, path, data)?;
            Ok(())
        };
        let config_name = format!("{}.json", sha256(&self.config).trim_start_matches("sha256:"));
        add(&config_name, &self.config)?;
        let mut layers = Vec::new();
        for l in &self.layers {
            let mut plain = Vec::new();
            flate2::read::GzDecoder::new(&l[..]).read_to_end(&mut plain)?;
            let name = format!("{}/layer.tar", sha256(&plain).trim_start_matches("sha256:"));
            add(&name, &plain)?;
            layers.push(name);
        }
        let manifest = serde_json::json!([{"Config": config_name, "RepoTags": [repo_tag], "Layers": layers}]);
        add("manifest.json", &serde_json::to_vec(&manifest)?)?;
        Ok(tar.into_inner()?)
    }
}
