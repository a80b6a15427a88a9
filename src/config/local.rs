//! Local files as rpiprov reads them: each opened once, checked on the opened descriptor
//! (a regular file, no larger than what rpiprov reads of its kind), and read from that
//! same descriptor, so that what was checked is what is read. A device (`/dev/zero`), a
//! FIFO or a folder is refused at once, before a byte is read; a file that grows past
//! its bound while being read is refused too.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// How much rpiprov reads of each kind of local file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// Inventory, playbook, stack files and the files they refer to, ssh config,
    /// known_hosts: text a person writes (an 8,000-host inventory is about 1 MiB).
    Text,
    /// An SSH identity file (the largest RSA key is about 13 KiB).
    Key,
    /// An image archive shipped to the nodes.
    Image,
}

impl Limit {
    pub fn bytes(self) -> u64 {
        match self {
            Limit::Text => 16 << 20,
            Limit::Key => 1 << 20,
            Limit::Image => 4 << 30,
        }
    }
}

/// Why a local file was not read; displayed after the file's name.
#[derive(Debug)]
pub enum Refused {
    Missing,
    Folder,
    /// Not a regular file: what it is.
    NotRegular(&'static str),
    TooLarge {
        size: u64,
        limit: u64,
    },
    Io(std::io::Error),
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Missing => write!(f, "no such file"),
            Refused::Folder => write!(f, "is a folder, not a file"),
            Refused::NotRegular(what) => write!(f, "not a regular file ({what})"),
            Refused::TooLarge { size, limit } => write!(
                f,
                "is {size} bytes, more than the {} rpiprov reads from such a file",
                human(*limit)
            ),
            Refused::Io(e) => write!(f, "cannot read: {}", super::diag::io_message(e)),
        }
    }
}

/// A limit in the unit it was written in.
fn human(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 && b % (1 << 30) == 0 => format!("{} GiB", b >> 30),
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b => format!("{b} bytes"),
    }
}

/// A local file opened and checked: read it with [`Opened::read`].
#[derive(Debug)]
pub struct Opened {
    file: File,
    size: u64,
    limit: u64,
}

/// Opens `path` (following links: where they lead is the caller's to judge, on
/// [`Opened::real_path`]) and checks the descriptor: a regular file within `limit`. A
/// FIFO is opened without waiting for a writer, a terminal without becoming this
/// process's.
pub fn open(path: &Path, limit: Limit) -> Result<Opened, Refused> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Refused::Missing,
            _ => Refused::Io(e),
        })?;
    let meta = file.metadata().map_err(Refused::Io)?;
    let t = meta.file_type();
    if t.is_dir() {
        return Err(Refused::Folder);
    }
    if !t.is_file() {
        return Err(Refused::NotRegular(if t.is_char_device() {
            "a character device"
        } else if t.is_block_device() {
            "a block device"
        } else if t.is_fifo() {
            "a FIFO"
        } else if t.is_socket() {
            "a socket"
        } else {
            "a special file"
        }));
    }
    let limit = limit.bytes();
    if meta.len() > limit {
        return Err(Refused::TooLarge {
            size: meta.len(),
            limit,
        });
    }
    Ok(Opened {
        file,
        size: meta.len(),
        limit,
    })
}

/// [`open`] and [`Opened::read`].
pub fn read(path: &Path, limit: Limit) -> Result<Vec<u8>, Refused> {
    open(path, limit)?.read()
}

impl Opened {
    /// The file this descriptor is open on, links resolved, as the kernel names it.
    pub fn real_path(&self) -> std::io::Result<PathBuf> {
        use std::os::fd::AsRawFd;
        std::fs::read_link(format!("/proc/self/fd/{}", self.file.as_raw_fd()))
    }

    /// The whole file, from the checked descriptor; refused when it grew past the limit.
    pub fn read(self) -> Result<Vec<u8>, Refused> {
        let mut bytes = Vec::with_capacity(usize::try_from(self.size).unwrap_or(0));
        let mut bounded = self.file.take(self.limit + 1);
        bounded.read_to_end(&mut bytes).map_err(Refused::Io)?;
        let size = bytes.len() as u64;
        if size > self.limit {
            return Err(Refused::TooLarge {
                size,
                limit: self.limit,
            });
        }
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_within_their_bound_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a.toml");
        std::fs::write(&f, "x = 1\n").unwrap();
        assert_eq!(read(&f, Limit::Text).unwrap(), b"x = 1\n");
        let show = |p: &Path, l| read(p, l).unwrap_err().to_string();
        assert_eq!(
            show(Path::new("/dev/zero"), Limit::Text),
            "not a regular file (a character device)"
        );
        assert_eq!(show(dir.path(), Limit::Text), "is a folder, not a file");
        assert_eq!(show(&dir.path().join("none"), Limit::Text), "no such file");
        // A FIFO with no writer: refused at once, not waited on.
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid C string, a plain syscall.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert_eq!(show(&fifo, Limit::Text), "not a regular file (a FIFO)");
        // Larger than the bound (sparse: no disk is used).
        let big = dir.path().join("big");
        File::create(&big).unwrap().set_len((1 << 20) + 1).unwrap();
        assert_eq!(
            show(&big, Limit::Key),
            "is 1048577 bytes, more than the 1 MiB rpiprov reads from such a file"
        );
    }
}
