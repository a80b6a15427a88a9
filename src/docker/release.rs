//! A stack's uploaded file set on the manager (see `deploy::release` for what it holds):
//! which sets are there already ([`releases_present`], read with the stack state, so an
//! unchanged set costs no round trip), extracting a new one atomically
//! ([`release_extract`]), and, once the stack converged, recording the deploy and removing
//! what it no longer uses ([`record_deploy`]): older sets, and the config and secret
//! versions that rpiprov named and no service uses any more.
//!
//! The switch to a set and the deploy from it are one command: [`super::stack::stack_deploy`].

use crate::config::ObjectKind;
use crate::config::compose::HASH_LEN;
use crate::docker::paths::{deployed_record, release_dir, releases_dir, stack_dir};
use crate::docker::stack::NAMESPACE_LABEL;
use crate::shell::quote;

/// Prints `release STACK ID` for each of these sets that exists (a set is renamed into
/// place only once fully extracted). Meant to follow [`super::stack::records_read`] in
/// the same round trip; read by [`parse_releases`].
pub fn releases_present(sets: &[(&str, &str)]) -> String {
    sets.iter()
        .map(|(stack, id)| {
            format!(
                "if [ -d {} ]; then echo {}; fi",
                quote(&release_dir(stack, id)),
                quote(&format!("release {stack} {id}"))
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The sets [`releases_present`] found: `(stack, id)`.
pub fn parse_releases(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| l.strip_prefix("release "))
        .filter_map(|rest| {
            let (stack, id) = rest.trim().split_once(' ')?;
            Some((stack.to_string(), id.to_string()))
        })
        .collect()
}

/// Said by [`release_extract`] when the set is in place.
pub const EXTRACTED: &str = "@@extracted";

/// Receives a set's tar stream on stdin, checks its sha256 (a cut connection must not
/// leave half a set), extracts it into a fresh folder and renames that into place:
/// readers see no set or the whole set. Folders 0700 and files as the stream says (0600),
/// owned by root. Says [`EXTRACTED`]. The fresh folder goes however the script ends: a
/// session that vanished mid-upload ends it by a signal (the complaint about the short
/// stream hits a closed pipe: SIGPIPE), and a shell killed by a signal runs no EXIT trap.
/// The traps come before the folder (an empty `$t` removes nothing).
pub fn release_extract(stack: &str, id: &str, sha256: &str) -> String {
    let (d, r, target) = (
        quote(&stack_dir(stack)),
        quote(&releases_dir(stack)),
        quote(&release_dir(stack, id)),
    );
    format!(
        "set -e
umask 077
mkdir -p {r}
chmod 700 {d} {r}
trap 'rm -rf \"$t\"' EXIT
trap 'rm -rf \"$t\"; exit 1' HUP INT TERM PIPE
t=$(mktemp -d {r}/.incoming.XXXXXX)
cat >\"$t/set.tar\"
if [ \"$(sha256sum <\"$t/set.tar\" | cut -c1-64)\" != {sha} ]; then echo 'rpiprov: the file set arrived incomplete' >&2; exit 1; fi
mkdir \"$t/set\"
tar -x -o -f \"$t/set.tar\" -C \"$t/set\"
if [ ! -d {target} ]; then mv -T \"$t/set\" {target}; fi
echo {EXTRACTED}
",
        sha = quote(sha256)
    )
}

/// What to record and keep once a stack converged.
#[derive(Debug, Clone)]
pub struct Record<'a> {
    pub stack: &'a str,
    pub fingerprint: &'a str,
    /// The set deployed: every other one is removed.
    pub release: &'a str,
    /// The configs and secrets rpiprov named for this deploy: kept.
    pub objects: &'a [(ObjectKind, String)],
}

/// Writes the deploy record (root only, atomically), removes the stack's other sets (and
/// the compose file that versions before sets kept beside them), then, when this set or an
/// older one had configs or secrets named by rpiprov, removes the versions of those that
/// carry the stack's label and rpiprov's name pattern (`<stack>_<key>_<hash>`) and that
/// this deploy does not use. Docker refuses to remove one that a service still uses: such
/// a refusal is said, not an error. Prints `removed config NAME`, `in-use secret NAME`;
/// read by [`parse_record`].
pub fn record_deploy(r: &Record) -> String {
    let d = stack_dir(r.stack);
    let keep_set = quote(&release_dir(r.stack, r.release));
    let mut s = format!(
        "set -e
d={dq}
printf '%s\\n' {fp} >\"$d/.deployed.new\"
chmod 600 \"$d/.deployed.new\"
mv -f \"$d/.deployed.new\" {rec}
named=
for f in \"$d\"/releases/*/names.yml; do if [ -e \"$f\" ]; then named=1; fi; done
for f in \"$d\"/releases/* \"$d\"/releases/.incoming.*; do if [ -e \"$f\" ] && [ \"$f\" != {keep_set} ]; then rm -rf \"$f\"; fi; done
for f in \"$d\"/* \"$d\"/.deployed.*; do case \"${{f##*/}}\" in releases|current|deployed) ;; *) if [ -e \"$f\" ]; then rm -rf \"$f\"; fi ;; esac; done
",
        dq = quote(&d),
        fp = quote(r.fingerprint),
        rec = quote(&deployed_record(r.stack)),
    );
    let hex = "[0-9a-f]".repeat(HASH_LEN);
    let filter = quote(&format!("label={NAMESPACE_LABEL}={}", r.stack));
    for kind in [ObjectKind::Config, ObjectKind::Secret] {
        let noun = kind.noun();
        let keep: Vec<String> = r
            .objects
            .iter()
            .filter(|(k, _)| *k == kind)
            .map(|(_, n)| quote(n))
            .collect();
        let keep = if keep.is_empty() {
            String::new()
        } else {
            format!("{}) ;; ", keep.join("|"))
        };
        s.push_str(&format!(
            "if [ -n \"$named\" ]; then for n in $(docker {noun} ls --filter {filter} --format '{{{{.Name}}}}'); do case \"$n\" in {keep}{stack}_*_{hex}) if docker {noun} rm \"$n\" >/dev/null 2>&1; then echo \"removed {noun} $n\"; else echo \"in-use {noun} $n\"; fi ;; esac; done; fi\n",
            stack = quote(r.stack),
        ));
    }
    s
}

/// What [`record_deploy`] removed, and kept because a service still uses it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pruned {
    /// `config NAME`, `secret NAME`.
    pub removed: Vec<String>,
    pub in_use: Vec<String>,
}

pub fn parse_record(text: &str) -> Pruned {
    let mut p = Pruned::default();
    for line in text.lines() {
        if let Some(x) = line.strip_prefix("removed ") {
            p.removed.push(x.trim().to_string());
        } else if let Some(x) = line.strip_prefix("in-use ") {
            p.in_use.push(x.trim().to_string());
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::script::{ScratchHost, syntax_ok};

    #[test]
    fn the_commands() {
        assert_eq!(
            releases_present(&[("web", "00aa"), ("db", "11bb")]),
            "if [ -d /var/lib/rpiprov/stacks/web/releases/00aa ]; then echo 'release web 00aa'; fi; if [ -d /var/lib/rpiprov/stacks/db/releases/11bb ]; then echo 'release db 11bb'; fi"
        );
        assert_eq!(
            parse_releases("stack web\nrelease web 00aa\nrelease db 11bb\n"),
            vec![
                ("web".to_string(), "00aa".to_string()),
                ("db".into(), "11bb".into())
            ]
        );
        assert_eq!(
            release_extract("web", "00aa", "ff"),
            "set -e
umask 077
mkdir -p /var/lib/rpiprov/stacks/web/releases
chmod 700 /var/lib/rpiprov/stacks/web /var/lib/rpiprov/stacks/web/releases
trap 'rm -rf \"$t\"' EXIT
trap 'rm -rf \"$t\"; exit 1' HUP INT TERM PIPE
t=$(mktemp -d /var/lib/rpiprov/stacks/web/releases/.incoming.XXXXXX)
cat >\"$t/set.tar\"
if [ \"$(sha256sum <\"$t/set.tar\" | cut -c1-64)\" != ff ]; then echo 'rpiprov: the file set arrived incomplete' >&2; exit 1; fi
mkdir \"$t/set\"
tar -x -o -f \"$t/set.tar\" -C \"$t/set\"
if [ ! -d /var/lib/rpiprov/stacks/web/releases/00aa ]; then mv -T \"$t/set\" /var/lib/rpiprov/stacks/web/releases/00aa; fi
echo @@extracted
"
        );
        let objects = [
            (ObjectKind::Config, "web_conf_0123456789".to_string()),
            (ObjectKind::Secret, "web_pw_abcdefabcd".to_string()),
        ];
        let rec = record_deploy(&Record {
            stack: "web",
            fingerprint: "f00d",
            release: "00aa",
            objects: &objects,
        });
        assert!(rec.contains("case \"$n\" in web_conf_0123456789) ;; web_*_[0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f]) if docker config rm"), "{rec}");
        for s in [
            releases_present(&[("a", "1")]),
            release_extract("a", "1", "2"),
            rec,
        ] {
            syntax_ok(&s);
        }
    }

    /// A tar stream made the way `deploy::release` makes it.
    fn set(files: &[(&str, &str)]) -> (Vec<u8>, String) {
        let mut b = tar::Builder::new(Vec::new());
        for (path, text) in files {
            let mut h = tar::Header::new_ustar();
            h.set_mode(0o600);
            h.set_size(text.len() as u64);
            b.append_data(&mut h, path, text.as_bytes()).unwrap();
        }
        let tar = b.into_inner().unwrap();
        let sha = {
            use sha2::Digest;
            hex::encode(sha2::Sha256::digest(&tar))
        };
        (tar, sha)
    }

    #[test]
    fn a_set_is_extracted_whole_or_not_at_all() {
        let host = ScratchHost::new();
        let (tar, sha) = set(&[
            ("files/web.yml", "services: {}\n"),
            ("files/conf/a.conf", "x\n"),
        ]);
        let ran = host.run(&release_extract("web", "00aa", &sha), &tar);
        assert_eq!(ran.stdout, "@@extracted\n", "{}", ran.stderr);
        let root = host.root();
        let dir = format!("{root}/stacks/web/releases/00aa");
        assert_eq!(
            std::fs::read_to_string(format!("{dir}/files/conf/a.conf")).unwrap(),
            "x\n"
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &str| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&format!("{dir}/files/web.yml")), 0o600);
        assert_eq!(mode(&format!("{root}/stacks/web/releases")), 0o700);
        // Only the set is left: no temporary folder.
        let names: Vec<String> = std::fs::read_dir(format!("{root}/stacks/web/releases"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["00aa"]);

        // A stream cut short is refused and leaves nothing.
        let ran = host.run(&release_extract("web", "11bb", &sha), &tar[..700]);
        assert_eq!(ran.code, 1);
        assert_eq!(ran.stderr, "rpiprov: the file set arrived incomplete\n");
        assert!(!std::path::Path::new(&format!("{root}/stacks/web/releases/11bb")).exists());
        assert_eq!(
            std::fs::read_dir(format!("{root}/stacks/web/releases"))
                .unwrap()
                .count(),
            1
        );

        // Issue 14: the session vanished mid-upload: the stream ends short and the
        // complaint hits a closed pipe (SIGPIPE, which runs no EXIT trap). Nothing is left.
        let vanished = format!(
            "{{ sh -c {} ; }} 2>&1 | true",
            quote(&release_extract("web", "22cc", &sha))
        );
        host.run(&vanished, &tar[..700]);
        let names: Vec<String> = std::fs::read_dir(format!("{root}/stacks/web/releases"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["00aa"]);
    }

    #[test]
    fn the_record_keeps_the_current_set_and_the_versions_in_use() {
        let host = ScratchHost::new();
        let root = host.root();
        let d = format!("{root}/stacks/web");
        for p in [
            "releases/old1/files",
            "releases/00aa/files",
            "releases/.incoming.x",
        ] {
            std::fs::create_dir_all(format!("{d}/{p}")).unwrap();
        }
        std::fs::write(format!("{d}/releases/old1/names.yml"), "{}").unwrap();
        std::fs::write(format!("{d}/web.yml"), "legacy upload").unwrap();
        std::os::unix::fs::symlink("releases/00aa", format!("{d}/current")).unwrap();
        host.answer(
            ("config", "ls"),
            "web_conf_0123456789\nweb_conf_aaaaaaaaaa\nweb_conf_bbbbbbbbbb\nweb_other\nweb_x_cccccccccc\n",
        );
        // The stand-in docker refuses to remove one version: it is in use.
        let objects = [(ObjectKind::Config, "web_conf_0123456789".to_string())];
        let cmd = record_deploy(&Record {
            stack: "web",
            fingerprint: "f00d",
            release: "00aa",
            objects: &objects,
        })
        .replace(
            "if docker config rm \"$n\"",
            "if [ \"$n\" != web_x_cccccccccc ] && docker config rm \"$n\"",
        );
        let out = host.run(&cmd, b"").ok();
        assert_eq!(
            parse_record(&out),
            Pruned {
                removed: vec![
                    "config web_conf_aaaaaaaaaa".into(),
                    "config web_conf_bbbbbbbbbb".into()
                ],
                in_use: vec!["config web_x_cccccccccc".into()],
            }
        );
        assert_eq!(
            std::fs::read_to_string(format!("{d}/deployed")).unwrap(),
            "f00d\n"
        );
        let mut left: Vec<String> = std::fs::read_dir(&d)
            .unwrap()
            .chain(std::fs::read_dir(format!("{d}/releases")).unwrap())
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["00aa", "current", "deployed", "releases"]);
        let calls = host.calls();
        assert!(
            calls.contains(
                "config ls --filter label=com.docker.stack.namespace=web --format {{.Name}}\n"
            ),
            "{calls}"
        );
        assert!(calls.contains("config rm web_conf_aaaaaaaaaa\n"), "{calls}");
        assert!(
            !calls.contains("rm web_other") && !calls.contains("rm web_conf_0123456789"),
            "{calls}"
        );
        // Without any set that named configs or secrets, Docker is not asked.
        std::fs::remove_dir_all(format!("{d}/releases/old1")).ok();
        std::fs::write(format!("{root}/../calls"), "").ok();
        let before = host.calls().lines().count();
        host.run(
            &record_deploy(&Record {
                stack: "web",
                fingerprint: "f00d",
                release: "00aa",
                objects: &[],
            }),
            b"",
        )
        .ok();
        assert_eq!(host.calls().lines().count(), before);
    }
}
