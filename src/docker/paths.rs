//! Everything rpiprov keeps on a host, under [`ROOT`]:
//! - `lock/owner` (manager): the deploy lock, see [`crate::docker::lock`];
//! - `stacks/<stack>/releases/<id>/` (manager): a stack's file set as uploaded, one folder
//!   per set (`files/...` and `names.yml`, see `deploy::release`), root only;
//! - `stacks/<stack>/current` (manager): a link to the release deployed last;
//! - `stacks/<stack>/deployed` (manager): fingerprint of the last converged deploy;
//! - `images/<name>.sha256` (every node): the archive a shipped image was loaded from;
//! - `stage/<kind>.XXXXXX/` (manager): a backup's copy or a restore's upload while it is
//!   taken or put back (see [`crate::docker::backup`]), removed once fetched or in place.
//!
//! `/etc/docker/daemon.json` is Docker's, not ours: see [`crate::docker::engine`].

/// Where rpiprov keeps its files on a host.
pub const ROOT: &str = "/var/lib/rpiprov";

pub fn lock_dir() -> String {
    format!("{ROOT}/lock")
}

/// The file in the lock folder that says who holds the lock.
pub fn lock_owner() -> String {
    format!("{}/owner", lock_dir())
}

/// The folder of every stack's folder.
pub fn stacks_dir() -> String {
    format!("{ROOT}/stacks")
}

pub fn stack_dir(stack: &str) -> String {
    format!("{}/{stack}", stacks_dir())
}

/// The folder of a stack's uploaded file sets.
pub fn releases_dir(stack: &str) -> String {
    format!("{}/releases", stack_dir(stack))
}

/// One uploaded file set; `id` is hex digits (see `deploy::release`).
pub fn release_dir(stack: &str, id: &str) -> String {
    format!("{}/{id}", releases_dir(stack))
}

/// The link to the release deployed last: `docker stack deploy` reads the files through
/// it, so that the paths it records (a relative bind source) stay the same from one
/// release to the next.
pub fn current_release(stack: &str) -> String {
    format!("{}/current", stack_dir(stack))
}

pub fn deployed_record(stack: &str) -> String {
    format!("{}/deployed", stack_dir(stack))
}

/// The folder of a backup's and a restore's stages ([`crate::docker::backup`]).
pub fn stage_dir() -> String {
    format!("{ROOT}/stage")
}

/// The folder of the shipped images' records.
pub fn images_dir() -> String {
    format!("{ROOT}/images")
}

/// An image name made safe as a file name: `lab/httpd:1` -> `lab_httpd_1`. Two names may
/// map to the same file; the record holds the full name too, so such a clash only causes a
/// reload, never a wrong skip.
pub fn sanitise(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect::<String>()
        .trim_start_matches('.')
        .to_string()
}

pub fn image_record(image: &str) -> String {
    format!("{}/{}.sha256", images_dir(), sanitise(image))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(
            deployed_record("web"),
            "/var/lib/rpiprov/stacks/web/deployed"
        );
        assert_eq!(
            release_dir("web", "0123abcd"),
            "/var/lib/rpiprov/stacks/web/releases/0123abcd"
        );
        assert_eq!(
            current_release("web"),
            "/var/lib/rpiprov/stacks/web/current"
        );
        assert_eq!(
            image_record("lab/httpd:1"),
            "/var/lib/rpiprov/images/lab_httpd_1.sha256"
        );
        assert_eq!(sanitise("../x y"), "_x_y");
        assert_eq!(
            sanitise("registry.local:5000/a/b@sha256:00"),
            "registry.local_5000_a_b_sha256_00"
        );
    }
}
