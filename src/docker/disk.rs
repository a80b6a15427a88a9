//! The disk under Docker: whether the file systems a node needs are read-only (the
//! classic end of an SD card: the kernel remounts ext4 read-only on I/O errors), from
//! `/proc/mounts` ([`mount_of`]), and what `docker system prune` would free, from the
//! Engine API's `GET /system/df` ([`prunable`]).

use serde::{Deserialize, Serialize};

/// The mount a path resolves to, from `/proc/mounts`'s text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mount {
    pub source: String,
    pub mount_point: String,
    pub fs_type: String,
    pub read_only: bool,
}

/// `/proc/mounts` escapes space, tab, newline and backslash as octal (`\040`).
fn unescape(field: &str) -> String {
    let mut out = String::new();
    let mut rest = field;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        let code = rest
            .get(i + 1..i + 4)
            .and_then(|o| u8::from_str_radix(o, 8).ok());
        match code {
            Some(b) => {
                out.push(b as char);
                rest = &rest[i + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[i + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

fn covers(mount_point: &str, path: &str) -> bool {
    mount_point == "/"
        || path == mount_point
        || path
            .strip_prefix(mount_point)
            .is_some_and(|r| r.starts_with('/'))
}

/// The mount `path` (absolute, without `..`) lives on: the longest mount point that
/// covers it, and of several at the same point the last (the one mounted on top).
pub fn mount_of(mounts: &str, path: &str) -> Option<Mount> {
    let mut best: Option<Mount> = None;
    for line in mounts.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let [source, point, fs_type, options, ..] = f[..] else {
            continue;
        };
        let point = unescape(point);
        if !covers(&point, path) {
            continue;
        }
        if best
            .as_ref()
            .is_some_and(|b| b.mount_point.len() > point.len())
        {
            continue;
        }
        best = Some(Mount {
            source: unescape(source),
            mount_point: point,
            fs_type: fs_type.to_string(),
            read_only: options.split(',').any(|o| o == "ro"),
        });
    }
    best
}

/// What `docker system prune` (without `-a`) would remove: stopped containers and
/// dangling images (no tag), with the space each frees.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Prunable {
    pub stopped_containers: u64,
    pub containers_bytes: u64,
    pub dangling_images: u64,
    pub images_bytes: u64,
}

impl Prunable {
    pub fn bytes(&self) -> u64 {
        self.containers_bytes + self.images_bytes
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DfImage {
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    #[serde(default)]
    containers: i64,
    #[serde(default)]
    size: i64,
    #[serde(default)]
    shared_size: i64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DfContainer {
    #[serde(default)]
    state: String,
    #[serde(default)]
    size_rw: i64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Df {
    #[serde(default)]
    images: Option<Vec<DfImage>>,
    #[serde(default)]
    containers: Option<Vec<DfContainer>>,
}

/// Reads `GET /system/df`'s answer. An image is dangling when it has no tag (the API
/// says none, or `<none>:<none>` on older engines); it frees its own layers (`Size` less
/// `SharedSize`, which is -1 where the engine did not count it). A container that is not
/// running frees its writable layer (`SizeRw`).
pub fn prunable(df_json: &[u8]) -> Result<Prunable, String> {
    let df: Df = serde_json::from_slice(df_json).map_err(|e| format!("GET /system/df: {e}"))?;
    let mut p = Prunable::default();
    for i in df.images.unwrap_or_default() {
        let dangling = i
            .repo_tags
            .as_deref()
            .is_none_or(|t| t.iter().all(|t| t == "<none>:<none>"));
        if dangling && i.containers <= 0 {
            p.dangling_images += 1;
            p.images_bytes += (i.size - i.shared_size.max(0)).max(0) as u64;
        }
    }
    for c in df.containers.unwrap_or_default() {
        if c.state != "running" && c.state != "paused" && c.state != "restarting" {
            p.stopped_containers += 1;
            p.containers_bytes += c.size_rw.max(0) as u64;
        }
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTS: &str = "/dev/mmcblk0p2 / ext4 rw,noatime 0 0\n\
        proc /proc proc rw,nosuid 0 0\n\
        /dev/mmcblk0p1 /boot/firmware vfat rw,relatime 0 0\n\
        /dev/sda1 /srv/my\\040data ext4 rw 0 0\n\
        /dev/mmcblk0p2 /var/lib/docker ext4 rw 0 0\n\
        /dev/mmcblk0p2 /var/lib/docker ext4 ro,relatime 0 0\n";

    #[test]
    fn a_path_lives_on_its_longest_mount_point_and_the_one_on_top() {
        let root = mount_of(MOUNTS, "/home/pi").unwrap();
        assert_eq!(
            root,
            Mount {
                source: "/dev/mmcblk0p2".into(),
                mount_point: "/".into(),
                fs_type: "ext4".into(),
                read_only: false
            }
        );
        let data = mount_of(MOUNTS, "/var/lib/docker").unwrap();
        assert_eq!(data.mount_point, "/var/lib/docker");
        assert!(data.read_only, "the last mount at a point is the one seen");
        assert_eq!(
            mount_of(MOUNTS, "/var/lib/dockerx").unwrap().mount_point,
            "/"
        );
        assert_eq!(
            mount_of(MOUNTS, "/srv/my data/x").unwrap().source,
            "/dev/sda1"
        );
        assert_eq!(mount_of("", "/"), None);
    }

    #[test]
    fn prune_frees_stopped_containers_and_dangling_images() {
        let df = serde_json::json!({
            "LayersSize": 1000,
            "Images": [
                {"Id": "sha256:a", "RepoTags": ["web:1"], "Containers": 1, "Size": 500, "SharedSize": 0},
                {"Id": "sha256:b", "RepoTags": [], "Containers": 0, "Size": 300, "SharedSize": 100},
                {"Id": "sha256:c", "RepoTags": ["<none>:<none>"], "Containers": 0, "Size": 50, "SharedSize": -1},
                {"Id": "sha256:d", "RepoTags": null, "Containers": 1, "Size": 70, "SharedSize": 0},
            ],
            "Containers": [
                {"Id": "1", "State": "running", "SizeRw": 10},
                {"Id": "2", "State": "exited", "SizeRw": 20},
                {"Id": "3", "State": "created", "SizeRw": 5},
            ],
            "Volumes": [], "BuildCache": [],
        });
        let p = prunable(df.to_string().as_bytes()).unwrap();
        assert_eq!(
            p,
            Prunable {
                stopped_containers: 2,
                containers_bytes: 25,
                dangling_images: 2,
                images_bytes: 250
            }
        );
        assert_eq!(p.bytes(), 275);
        assert_eq!(prunable(b"{}").unwrap(), Prunable::default());
        assert!(prunable(b"not json").is_err());
    }
}
