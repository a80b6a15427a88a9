//! The Pi's own signals, where its hardware has them: the firmware's throttled flags, the
//! SoC temperature, the board's model. A shell snippet that reads them without root
//! ([`read`]) and its parser ([`parse`]); a host without them (not a Pi, or a kernel
//! without the firmware driver) shows nothing.
//!
//! Where a Pi's kernel presents them:
//!
//! - [`THROTTLED_FILE`]: the Raspberry Pi kernel's firmware driver, the flags of
//!   `vcgencmd get_throttled` in hex (`50005`; vcgencmd says `throttled=0x50005`): bit 0
//!   under-voltage now, 1 ARM frequency capped, 2 throttled, 3 soft temperature limit;
//!   bits 16 to 19 the same "has occurred since boot".
//! - [`TEMP_FILE`]: the thermal framework's first zone (the SoC's on a Pi), millidegrees.
//! - [`MODEL_FILE`]: the device tree's `model` property, NUL-terminated;
//!   `/proc/device-tree` is the kernel's symlink to [`MODEL_TARGET`]'s directory (the
//!   symlink is the stable ABI), read second.

use serde::Serialize;

pub const THROTTLED_FILE: &str = "/sys/devices/platform/soc/soc:firmware/get_throttled";
pub const TEMP_FILE: &str = "/sys/class/thermal/thermal_zone0/temp";
pub const MODEL_FILE: &str = "/proc/device-tree/model";
pub const MODEL_TARGET: &str = "/sys/firmware/devicetree/base/model";

/// The longest model text kept (the device tree's are about 40 characters).
const MODEL_MAX: usize = 100;

/// Prints each signal after its marker; a missing file prints nothing after it. The
/// model's NUL goes (`tr`, coreutils); each read is bounded (`head -c`).
pub fn read() -> String {
    format!(
        "echo @@throttled; head -c 64 {THROTTLED_FILE} 2>/dev/null; \
         echo; echo @@temp; head -c 64 {TEMP_FILE} 2>/dev/null; \
         echo; echo @@model; {{ head -c {MODEL_MAX} {MODEL_FILE} 2>/dev/null || head -c {MODEL_MAX} {MODEL_TARGET} 2>/dev/null; }} | tr -d '\\000'; \
         echo; echo @@end"
    )
}

/// The firmware's flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttled(pub u32);

impl Throttled {
    pub const UNDER_VOLTAGE: u32 = 1 << 0;
    pub const FREQ_CAPPED: u32 = 1 << 1;
    pub const THROTTLED: u32 = 1 << 2;
    pub const SOFT_TEMP_LIMIT: u32 = 1 << 3;
    const SINCE_BOOT: u32 = 16;

    /// `50005` (the sysfs file), `0x50005`, or `throttled=0x50005` (vcgencmd): hex.
    pub fn parse(text: &str) -> Option<Throttled> {
        let t = text.trim();
        let t = t.strip_prefix("throttled=").unwrap_or(t);
        let t = t
            .strip_prefix("0x")
            .or_else(|| t.strip_prefix("0X"))
            .unwrap_or(t);
        (!t.is_empty() && t.len() <= 8)
            .then(|| u32::from_str_radix(t, 16).ok())
            .flatten()
            .map(Throttled)
    }

    pub fn now(self, flag: u32) -> bool {
        self.0 & flag != 0
    }

    pub fn since_boot(self, flag: u32) -> bool {
        self.0 & (flag << Self::SINCE_BOOT) != 0
    }

    /// A flag now or at some time since boot.
    pub fn ever(self, flag: u32) -> bool {
        self.now(flag) || self.since_boot(flag)
    }

    /// The flags as words: `under-voltage now, throttled since boot`.
    pub fn describe(self) -> Vec<String> {
        let names = [
            (Self::UNDER_VOLTAGE, "under-voltage"),
            (Self::FREQ_CAPPED, "frequency capped"),
            (Self::THROTTLED, "throttled"),
            (Self::SOFT_TEMP_LIMIT, "soft temperature limit"),
        ];
        names
            .iter()
            .filter(|(f, _)| self.ever(*f))
            .map(|(f, name)| {
                let when = if self.now(*f) { "now" } else { "since boot" };
                format!("{name} {when}")
            })
            .collect()
    }
}

/// Which Pi, from the model's text, for what its power supply should give.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Board {
    Pi4,
    Pi5,
    Other,
}

/// What the host shows of its own hardware.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Signals {
    /// The raw flags (`None`: no such file).
    #[serde(serialize_with = "hex")]
    pub throttled: Option<Throttled>,
    pub temp_millicelsius: Option<i64>,
    /// Printable ASCII only (what the Pi says about itself goes to a terminal).
    pub model: Option<String>,
}

fn hex<S: serde::Serializer>(t: &Option<Throttled>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&format!("0x{:x}", t.0)),
        None => s.serialize_none(),
    }
}

impl Signals {
    pub fn is_empty(&self) -> bool {
        *self == Signals::default()
    }

    pub fn celsius(&self) -> Option<f64> {
        self.temp_millicelsius.map(|m| m as f64 / 1000.0)
    }

    pub fn board(&self) -> Board {
        match self.model.as_deref() {
            Some(m) if m.starts_with("Raspberry Pi 5") => Board::Pi5,
            Some(m) if m.starts_with("Raspberry Pi 4") || m.starts_with("Raspberry Pi 400") => {
                Board::Pi4
            }
            _ => Board::Other,
        }
    }

    /// One cell for `status`: `under-voltage now, 83 °C` (empty where the host shows none).
    pub fn cell(&self) -> String {
        let mut parts = self.throttled.map(Throttled::describe).unwrap_or_default();
        if let Some(c) = self.celsius() {
            parts.push(format!("{c:.0} °C"));
        }
        parts.join(", ")
    }
}

/// Reads [`read`]'s answer. Text that is not what the kernel prints counts as absent.
pub fn parse(output: &str) -> Signals {
    let mut s = Signals::default();
    let mut section = "";
    for line in output.lines() {
        if let Some(name) = line.strip_prefix("@@") {
            section = name;
            continue;
        }
        if line.trim().is_empty() {
            continue;
        }
        s.take(section, line);
    }
    s
}

impl Signals {
    /// One signal's text (`throttled`, `temp` or `model`), as read: the first valid one
    /// counts.
    pub fn take(&mut self, name: &str, line: &str) {
        let s = self;
        match name {
            "throttled" => s.throttled = s.throttled.or(Throttled::parse(line)),
            "temp" => {
                s.temp_millicelsius = s.temp_millicelsius.or(line
                    .trim()
                    .parse()
                    .ok()
                    .filter(|m: &i64| m.abs() < 1_000_000));
            }
            "model" if s.model.is_none() => {
                let clean: String = line
                    .chars()
                    .filter(|c| c.is_ascii_graphic() || *c == ' ')
                    .take(MODEL_MAX)
                    .collect();
                let clean = clean.trim();
                s.model = (!clean.is_empty()).then(|| clean.to_string());
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_read_is_one_line_of_shell_with_every_file() {
        assert_eq!(
            read(),
            "echo @@throttled; head -c 64 /sys/devices/platform/soc/soc:firmware/get_throttled 2>/dev/null; \
             echo; echo @@temp; head -c 64 /sys/class/thermal/thermal_zone0/temp 2>/dev/null; \
             echo; echo @@model; { head -c 100 /proc/device-tree/model 2>/dev/null || head -c 100 /sys/firmware/devicetree/base/model 2>/dev/null; } | tr -d '\\000'; \
             echo; echo @@end"
        );
    }

    #[test]
    fn the_flags_read_as_the_firmware_sets_them() {
        for text in ["50005\n", "0x50005", "throttled=0x50005"] {
            assert_eq!(Throttled::parse(text), Some(Throttled(0x50005)), "{text}");
        }
        for bad in ["", "zz", "0x", "123456789"] {
            assert_eq!(Throttled::parse(bad), None, "{bad}");
        }
        let t = Throttled(0x50005);
        assert!(t.now(Throttled::UNDER_VOLTAGE) && t.now(Throttled::THROTTLED));
        assert!(!t.now(Throttled::FREQ_CAPPED));
        assert_eq!(t.describe(), ["under-voltage now", "throttled now"]);
        assert_eq!(
            Throttled(0x50000).describe(),
            ["under-voltage since boot", "throttled since boot"]
        );
        assert_eq!(
            Throttled(0x80008).describe(),
            ["soft temperature limit now"]
        );
        assert!(Throttled(0).describe().is_empty());
    }

    #[test]
    fn a_pi_shows_its_signals_and_another_machine_none() {
        let pi = parse(
            "@@throttled\n10001\n\n@@temp\n83000\n\n@@model\nRaspberry Pi 4 Model B Rev 1.4\n@@end\n",
        );
        assert_eq!(
            pi,
            Signals {
                throttled: Some(Throttled(0x10001)),
                temp_millicelsius: Some(83000),
                model: Some("Raspberry Pi 4 Model B Rev 1.4".into()),
            }
        );
        assert_eq!(pi.board(), Board::Pi4);
        assert_eq!(pi.cell(), "under-voltage now, 83 °C");
        assert_eq!(
            serde_json::to_value(&pi).unwrap(),
            serde_json::json!({"throttled": "0x10001", "temp_millicelsius": 83000,
                               "model": "Raspberry Pi 4 Model B Rev 1.4"})
        );
        let none = parse("@@throttled\n\n@@temp\n\n@@model\n\n@@end\n");
        assert!(none.is_empty());
        assert_eq!(none.cell(), "");
        assert_eq!(none.board(), Board::Other);
    }

    #[test]
    fn what_the_host_says_is_bounded_and_cleaned() {
        let s = parse("@@temp\nhot\n@@model\nRaspberry Pi 5 Model B\x1b[2J Rev 1.0\n@@end\n");
        assert_eq!(s.temp_millicelsius, None);
        assert_eq!(
            s.model.as_deref(),
            Some("Raspberry Pi 5 Model B[2J Rev 1.0")
        );
        assert_eq!(s.board(), Board::Pi5);
        let long = format!("@@model\n{}\n", "x".repeat(500));
        assert_eq!(parse(&long).model.unwrap().len(), 100);
    }
}
