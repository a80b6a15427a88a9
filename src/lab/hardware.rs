//! `lab hardware`: a node shows a Pi's own signals as a Pi's kernel presents them, in the
//! node's private mount namespace only: the firmware's throttled flags, the SoC
//! temperature, the board's model, and file systems turned read-only (an SD card's end).
//!
//! Where a Pi's kernel has them (the Raspberry Pi kernel's firmware driver, the thermal
//! framework, the device tree):
//!
//! - `/sys/devices/platform/soc/soc:firmware/get_throttled`: the firmware's flags in hex
//!   without `0x` (`50005`), as `vcgencmd get_throttled` says them (`throttled=0x50005`):
//!   bit 0 under-voltage now, 1 ARM frequency capped, 2 throttled, 3 soft temperature
//!   limit; bits 16 to 19 the same "has occurred since boot".
//! - `/sys/class/thermal/thermal_zone0/temp`: millidegrees Celsius (`83000`), and `type`
//!   beside it (`cpu-thermal`).
//! - `/proc/device-tree/model`: the device tree's `model` property, exact bytes, so ending
//!   in a NUL (`Raspberry Pi 4 Model B Rev 1.4\0`). `/proc/device-tree` is the kernel's
//!   symlink to `/sys/firmware/devicetree/base` (its stable ABI); a kernel booted without a
//!   device tree has neither, procfs takes no new entry and overlayfs refuses procfs, so
//!   the lab shows the model at the symlink's target, where a Pi has the same file.
//!
//! Each is a read-only overlay (the node directory's `hardware/<layer>` over the kernel's
//! directory) on `/sys/devices/platform`, `/sys/class` or `/sys/firmware`: the kernel's own
//! entries stay visible beside the fakes. A read-only PATH is a bind mount of PATH onto
//! itself remounted `ro` (or, where PATH is a mount point, that mount remounted `ro`): only
//! the node's copy of the mount changes, never this machine's.
//!
//! What is faked is recorded in the node directory (`hardware.json`); the boot script
//! removes the record with the namespace it described, so a restarted node shows nothing.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::{LabError, Result};

/// The record of what a node fakes, in its node directory.
pub const RECORD: &str = "hardware.json";
/// The overlays' lower directories, in the node directory.
pub const LAYERS_DIR: &str = "hardware";

/// The firmware's flags the lab fakes (`vcgencmd get_throttled`; bit 1, ARM frequency
/// capped, and 3, soft temperature limit, it leaves clear).
pub const UNDER_VOLTAGE: u32 = 1 << 0;
pub const THROTTLED: u32 = 1 << 2;
/// Bits 16-19: the same flags, "has occurred since boot".
pub const SINCE_BOOT_SHIFT: u32 = 16;

/// Each overlay: its name under [`LAYERS_DIR`] and the kernel directory it covers.
pub const LAYERS: [(&str, &str); 3] = [
    ("platform", "/sys/devices/platform"),
    ("class", "/sys/class"),
    ("firmware", "/sys/firmware"),
];

/// A file system the lab turned read-only in the node, and how it undoes that. A mount
/// with files open for writing (dockerd's databases under `/var/lib/docker`) refuses to
/// be remounted read-only (EBUSY); a Pi's kernel forces it (`errors=remount-ro`). The lab
/// stacks a recursive bind of PATH on PATH instead and makes that one read-only: what is
/// opened from then on, and `/proc/mounts` (its last line for PATH), say read-only, while
/// descriptors opened before keep writing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadOnly {
    pub path: String,
    /// The lab stacked a bind of PATH onto PATH (undone by detaching it, with the copies
    /// of the mounts below it); otherwise PATH was a mount point remounted `ro` (undone by
    /// remounting it `rw`).
    pub bound: bool,
}

/// What a node fakes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Faked {
    pub under_voltage: bool,
    pub throttled: bool,
    pub temp_millicelsius: Option<i64>,
    pub model: Option<String>,
    pub read_only: Vec<ReadOnly>,
}

/// What `lab hardware` is asked to change: `clear` first, then the rest on top.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Change {
    pub clear: bool,
    pub under_voltage: bool,
    pub throttled: bool,
    pub temp_celsius: Option<f64>,
    pub model: Option<String>,
    pub read_only: Vec<String>,
}

impl Change {
    /// Refuses values no Pi shows, and paths that could not go through a mount safely.
    pub fn validate(&self) -> Result<()> {
        let usage = |m: String| Err(LabError::Usage(m));
        if let Some(t) = self.temp_celsius
            && !(-40.0..=150.0).contains(&t)
        {
            return usage(format!(
                "--temp {t}: a SoC temperature in °C between -40 and 150"
            ));
        }
        if let Some(m) = &self.model {
            let printable = m.chars().all(|c| c.is_ascii_graphic() || c == ' ');
            if m.is_empty() || m.len() > 100 || !printable {
                return usage(format!(
                    "--model {m:?}: 1 to 100 printable ASCII characters, such as \"Raspberry Pi 4 Model B Rev 1.4\""
                ));
            }
        }
        for p in &self.read_only {
            let plain = p
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"/._-+@".contains(&b));
            if !p.starts_with('/') || !plain || p.split('/').any(|c| c == "..") {
                return usage(format!(
                    "--read-only {p:?}: an absolute path of letters, digits and / . _ - + @ inside the node"
                ));
            }
        }
        Ok(())
    }
}

/// The path as given, without trailing slashes (`/` stays `/`).
fn normal(path: &str) -> String {
    let t = path.trim_end_matches('/');
    if t.is_empty() { "/".into() } else { t.into() }
}

/// What the node fakes after `change` (pure). Read-only paths are added (their `bound`
/// is decided in the node; `false` until then); `clear` drops everything first.
pub fn merged(old: &Faked, change: &Change) -> Faked {
    let mut f = if change.clear {
        Faked::default()
    } else {
        old.clone()
    };
    f.under_voltage |= change.under_voltage;
    f.throttled |= change.throttled;
    if let Some(t) = change.temp_celsius {
        f.temp_millicelsius = Some((t * 1000.0).round() as i64);
    }
    if let Some(m) = &change.model {
        f.model = Some(m.clone());
    }
    for p in change.read_only.iter().map(|p| normal(p)) {
        if !f.read_only.iter().any(|r| r.path == p) {
            let was = old.read_only.iter().find(|r| r.path == p && !change.clear);
            f.read_only.push(was.cloned().unwrap_or(ReadOnly {
                path: p,
                bound: false,
            }));
        }
    }
    f
}

impl Faked {
    /// The firmware's flags: each condition now, and since boot.
    pub fn throttled_word(&self) -> u32 {
        let mut now = 0;
        if self.under_voltage {
            now |= UNDER_VOLTAGE;
        }
        if self.throttled {
            now |= THROTTLED;
        }
        now | (now << SINCE_BOOT_SHIFT)
    }

    pub fn is_empty(&self) -> bool {
        *self == Faked::default()
    }

    /// The overlays' files: (layer, path inside the layer, contents), as the kernel
    /// would print them.
    pub fn layer_files(&self) -> Vec<(&'static str, &'static str, Vec<u8>)> {
        let mut v = Vec::new();
        if self.under_voltage || self.throttled {
            let text = format!("{:x}\n", self.throttled_word());
            v.push((
                "platform",
                "soc/soc:firmware/get_throttled",
                text.into_bytes(),
            ));
        }
        if let Some(t) = self.temp_millicelsius {
            v.push((
                "class",
                "thermal/thermal_zone0/temp",
                format!("{t}\n").into_bytes(),
            ));
            v.push((
                "class",
                "thermal/thermal_zone0/type",
                b"cpu-thermal\n".to_vec(),
            ));
        }
        if let Some(m) = &self.model {
            let mut bytes = m.clone().into_bytes();
            bytes.push(0);
            v.push(("firmware", "devicetree/base/model", bytes));
        }
        v
    }

    /// One line for people: `under-voltage, throttled (get_throttled 50005), 83 °C, ...`.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        let mut flags = Vec::new();
        if self.under_voltage {
            flags.push("under-voltage");
        }
        if self.throttled {
            flags.push("throttled");
        }
        if !flags.is_empty() {
            parts.push(format!(
                "{} (get_throttled {:x})",
                flags.join(", "),
                self.throttled_word()
            ));
        }
        if let Some(t) = self.temp_millicelsius {
            parts.push(format!("{} °C", celsius(t)));
        }
        if let Some(m) = &self.model {
            parts.push(format!("model {m:?}"));
        }
        for r in &self.read_only {
            parts.push(format!("{} read-only", r.path));
        }
        if parts.is_empty() {
            "nothing faked".into()
        } else {
            parts.join(", ")
        }
    }

    /// A short cell for `lab status`: `uv,thr,83°C,model,ro:/var/lib/docker`, or empty.
    pub fn cell(&self) -> String {
        let mut v: Vec<String> = Vec::new();
        if self.under_voltage {
            v.push("under-voltage".into());
        }
        if self.throttled {
            v.push("throttled".into());
        }
        if let Some(t) = self.temp_millicelsius {
            v.push(format!("{}°C", celsius(t)));
        }
        if self.model.is_some() {
            v.push("model".into());
        }
        v.extend(self.read_only.iter().map(|r| format!("ro:{}", r.path)));
        v.join(",")
    }

    /// The record as `--json` shows it: what is faked and what the files hold.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "under_voltage": self.under_voltage,
            "throttled": self.throttled,
            "get_throttled": (self.under_voltage || self.throttled)
                .then(|| format!("0x{:x}", self.throttled_word())),
            "temp_celsius": self.temp_millicelsius.map(|t| t as f64 / 1000.0),
            "model": self.model,
            "read_only": self.read_only.iter().map(|r| r.path.clone()).collect::<Vec<_>>(),
        })
    }
}

fn celsius(milli: i64) -> String {
    let c = milli as f64 / 1000.0;
    if milli % 1000 == 0 {
        format!("{c:.0}")
    } else {
        format!("{c}")
    }
}

/// The node's record (`None`: nothing faked, or a record that cannot be read).
pub fn load(node_dir: &Path) -> Faked {
    std::fs::read(node_dir.join(RECORD))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// The arguments of [`apply_script`] for going from `old` to `new`: `ro:PATH` for each
/// path to turn read-only, `rw-bind:PATH` / `rw-remount:PATH` for each to undo (last
/// made, first undone).
pub fn mount_ops(old: &Faked, new: &Faked) -> Vec<String> {
    let mut ops: Vec<String> = old
        .read_only
        .iter()
        .rev()
        .filter(|r| !new.read_only.iter().any(|n| n.path == r.path))
        .map(|r| {
            let how = if r.bound { "rw-bind" } else { "rw-remount" };
            format!("{how}:{}", r.path)
        })
        .collect();
    ops.extend(
        new.read_only
            .iter()
            .filter(|n| !old.read_only.iter().any(|r| r.path == n.path))
            .map(|n| format!("ro:{}", n.path)),
    );
    ops
}

/// Reads what [`apply_script`] printed: `bind PATH` or `remount PATH` per path it made
/// read-only, into `new`'s records.
pub fn record_mounts(new: &mut Faked, printed: &str) {
    for line in printed.lines() {
        if let Some((how, path)) = line.split_once(' ')
            && let Some(r) = new.read_only.iter_mut().find(|r| r.path == path)
        {
            r.bound = how == "bind";
        }
    }
}

/// The script run inside the node, with [`mount_ops`] as arguments, once the new layers are in
/// `$H.new` (written from this machine): the lab's overlays go, the new layers take the
/// old ones' place, the overlays of the layers that exist are mounted again, then the
/// read-only mounts change (what it printed goes to [`record_mounts`]). Overlays are mounted anew rather than their lower
/// directories changed under them (overlayfs leaves that undefined).
pub fn apply_script() -> String {
    let layers: Vec<String> = LAYERS.iter().map(|(l, at)| format!("{l}:{at}")).collect();
    format!(
        "# lab hardware\nset -eu\nH=/run/rpiprov-node/{LAYERS_DIR}\nLAYERS=\"{}\"\n{APPLY_BODY}",
        layers.join(" ")
    )
}

const APPLY_BODY: &str = r#"ours() { grep -q "^[^ ]* [^ ]* [^ ]* [^ ]* $1 .* - overlay rpiprov-hw " /proc/self/mountinfo; }
for l in $LAYERS; do
  at=${l#*:}
  while ours "$at"; do umount "$at"; done
done
rm -rf "$H"
if [ -d "$H.new" ]; then mv "$H.new" "$H"; fi
for l in $LAYERS; do
  name=${l%%:*}; at=${l#*:}
  if [ -d "$H/$name" ]; then mount -t overlay rpiprov-hw -o "lowerdir=$H/$name:$at" "$at"; fi
done
for op in "$@"; do
  p=${op#*:}
  case $op in
    ro:*)
      [ -d "$p" ] || { echo "$p: no such directory in the node" >&2; exit 1; }
      if mountpoint -q "$p" && mount -o remount,bind,ro "$p" 2>/dev/null; then
        echo "remount $p"
      else
        mount --rbind "$p" "$p"; mount -o remount,bind,ro "$p"; echo "bind $p"
      fi ;;
    rw-bind:*) umount -l "$p" ;;
    rw-remount:*) mount -o remount,bind,rw "$p" ;;
  esac
done
"#;

/// The new layers' directory, beside the node's `hardware/` (see [`apply_script`]).
pub fn staging(node_dir: &Path) -> PathBuf {
    node_dir.join(format!("{LAYERS_DIR}.new"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change() -> Change {
        Change::default()
    }

    #[test]
    fn the_firmware_word_has_each_flag_now_and_since_boot() {
        let uv = merged(
            &Faked::default(),
            &Change {
                under_voltage: true,
                ..change()
            },
        );
        assert_eq!(uv.throttled_word(), 0x10001);
        let both = merged(
            &uv,
            &Change {
                throttled: true,
                ..change()
            },
        );
        assert_eq!(both.throttled_word(), 0x50005);
        assert_eq!(
            both.layer_files(),
            [(
                "platform",
                "soc/soc:firmware/get_throttled",
                b"50005\n".to_vec()
            )]
        );
        assert_eq!(Faked::default().throttled_word(), 0);
        assert!(Faked::default().layer_files().is_empty());
    }

    #[test]
    fn temperature_and_model_are_what_the_kernel_prints() {
        let f = merged(
            &Faked::default(),
            &Change {
                temp_celsius: Some(83.0),
                model: Some("Raspberry Pi 4 Model B Rev 1.4".into()),
                ..change()
            },
        );
        assert_eq!(
            f.layer_files(),
            [
                ("class", "thermal/thermal_zone0/temp", b"83000\n".to_vec()),
                (
                    "class",
                    "thermal/thermal_zone0/type",
                    b"cpu-thermal\n".to_vec()
                ),
                (
                    "firmware",
                    "devicetree/base/model",
                    b"Raspberry Pi 4 Model B Rev 1.4\0".to_vec()
                ),
            ]
        );
        assert_eq!(
            f.summary(),
            "83 °C, model \"Raspberry Pi 4 Model B Rev 1.4\""
        );
        let half = merged(
            &f,
            &Change {
                temp_celsius: Some(61.5),
                ..change()
            },
        );
        assert_eq!(half.temp_millicelsius, Some(61500));
        assert_eq!(half.cell(), "61.5°C,model");
    }

    #[test]
    fn a_change_keeps_what_it_does_not_name_and_clear_drops_all_first() {
        let old = Faked {
            under_voltage: true,
            temp_millicelsius: Some(83000),
            read_only: vec![ReadOnly {
                path: "/var/lib/docker".into(),
                bound: false,
            }],
            ..Faked::default()
        };
        let same = merged(
            &old,
            &Change {
                read_only: vec!["/var/lib/docker/".into()],
                ..change()
            },
        );
        assert_eq!(same, old, "the same path again changes nothing");
        assert!(mount_ops(&old, &same).is_empty());
        let cleared = merged(
            &old,
            &Change {
                clear: true,
                model: Some("Raspberry Pi 5 Model B Rev 1.0".into()),
                ..change()
            },
        );
        assert!(!cleared.under_voltage && cleared.temp_millicelsius.is_none());
        assert_eq!(mount_ops(&old, &cleared), ["rw-remount:/var/lib/docker"]);
        assert!(
            merged(
                &old,
                &Change {
                    clear: true,
                    ..change()
                }
            )
            .is_empty()
        );
    }

    #[test]
    fn read_only_mounts_are_undone_the_way_they_were_made() {
        let mut new = merged(
            &Faked::default(),
            &Change {
                read_only: vec!["/".into(), "/srv/data".into()],
                ..change()
            },
        );
        assert_eq!(mount_ops(&Faked::default(), &new), ["ro:/", "ro:/srv/data"]);
        record_mounts(&mut new, "remount /\nbind /srv/data\n");
        assert_eq!(
            new.read_only,
            [
                ReadOnly {
                    path: "/".into(),
                    bound: false
                },
                ReadOnly {
                    path: "/srv/data".into(),
                    bound: true
                }
            ]
        );
        assert_eq!(
            mount_ops(&new, &Faked::default()),
            ["rw-bind:/srv/data", "rw-remount:/"]
        );
        assert_eq!(new.cell(), "ro:/,ro:/srv/data");
    }

    #[test]
    fn the_script_mounts_each_layer_over_its_kernel_directory() {
        let s = apply_script();
        assert!(s.starts_with(
            "# lab hardware\nset -eu\nH=/run/rpiprov-node/hardware\n\
             LAYERS=\"platform:/sys/devices/platform class:/sys/class firmware:/sys/firmware\"\n"
        ));
        assert!(s.contains("mount -t overlay rpiprov-hw -o \"lowerdir=$H/$name:$at\" \"$at\""));
    }

    #[test]
    fn values_no_pi_shows_are_usage_errors() {
        let bad = [
            Change {
                temp_celsius: Some(200.0),
                ..change()
            },
            Change {
                model: Some(String::new()),
                ..change()
            },
            Change {
                model: Some("Pi\n4".into()),
                ..change()
            },
            Change {
                read_only: vec!["var/lib/docker".into()],
                ..change()
            },
            Change {
                read_only: vec!["/a b".into()],
                ..change()
            },
            Change {
                read_only: vec!["/x/../etc".into()],
                ..change()
            },
        ];
        for c in bad {
            assert!(matches!(c.validate(), Err(LabError::Usage(_))), "{c:?}");
        }
        let good = Change {
            temp_celsius: Some(83.0),
            model: Some("Raspberry Pi 4 Model B Rev 1.4".into()),
            read_only: vec!["/var/lib/docker".into(), "/".into()],
            ..change()
        };
        assert!(good.validate().is_ok());
    }

    #[test]
    fn the_json_says_what_the_files_hold() {
        let f = Faked {
            under_voltage: true,
            temp_millicelsius: Some(83000),
            ..Faked::default()
        };
        assert_eq!(
            f.to_json(),
            serde_json::json!({
                "under_voltage": true, "throttled": false, "get_throttled": "0x10001",
                "temp_celsius": 83.0, "model": null, "read_only": [],
            })
        );
    }
}
