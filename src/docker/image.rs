//! Images shipped over SSH instead of pulled from a registry (the Pis have none): the
//! command that asks a node which images it lacks, the commands that load an archive from
//! stdin (`docker load` for `docker save` archives, `docker import` for root file
//! systems) and record which archive it came from, and `teardown --purge`'s removal.
//! Shipping itself (which node, in parallel) is `deploy`'s: see `crate::deploy::images`.

use crate::docker::paths::{image_record, images_dir};
use crate::shell::{join, quote};

/// An image to check or load on a node.
#[derive(Debug, Clone, Copy)]
pub struct ImageRef<'a> {
    pub name: &'a str,
    pub sha256: &'a str,
}

/// What an image record holds: the archive's sha256 and the image name.
pub fn image_record_line(sha256: &str, image: &str) -> String {
    format!("{sha256} {image}")
}

/// One round trip per node: for each image (by index), `image I present` when the record
/// names the same archive AND Docker still has the image (someone may have removed it),
/// `image I missing` otherwise. Read by [`parse_missing`].
pub fn images_check(images: &[ImageRef<'_>]) -> String {
    images
        .iter()
        .enumerate()
        .map(|(i, img)| {
            format!(
                "if [ \"$(cat {rec} 2>/dev/null)\" = {line} ] && docker image inspect {name} >/dev/null 2>&1; then echo 'image {i} present'; else echo 'image {i} missing'; fi",
                rec = quote(&image_record(img.name)),
                line = quote(&image_record_line(img.sha256, img.name)),
                name = quote(img.name),
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Reads the output of [`images_check`]: the indices of the images a node lacks.
pub fn parse_missing(output: &str, count: usize) -> Result<Vec<usize>, String> {
    let mut seen = vec![false; count];
    let mut missing = Vec::new();
    for line in output.lines() {
        let mut it = line.split_whitespace();
        if it.next() != Some("image") {
            continue;
        }
        let (Some(i), Some(state)) = (it.next().and_then(|i| i.parse::<usize>().ok()), it.next())
        else {
            continue;
        };
        if i >= count {
            continue;
        }
        seen[i] = true;
        if state != "present" {
            missing.push(i);
        }
    }
    if let Some(i) = seen.iter().position(|s| !s) {
        return Err(format!("the image check did not answer for image {i}"));
    }
    Ok(missing)
}

/// After a load: check that the archive really provided the image, then record it.
fn image_loaded_tail(img: &ImageRef<'_>) -> String {
    format!(
        "docker image inspect {name} >/dev/null 2>&1 || {{ echo {msg} >&2; exit 1; }}; mkdir -p {dir}; printf '%s\\n' {line} > {rec}",
        name = quote(img.name),
        msg = quote(&format!(
            "the archive did not provide the image {}",
            img.name
        )),
        dir = quote(&images_dir()),
        line = quote(&image_record_line(img.sha256, img.name)),
        rec = quote(&image_record(img.name)),
    )
}

/// Loads a `docker save` archive read from stdin.
pub fn image_load(img: &ImageRef<'_>) -> String {
    format!("set -e; docker load; {}", image_loaded_tail(img))
}

/// Imports a root file system tarball read from stdin as `name`, with its `CMD` given as a
/// JSON array (exec form: no shell needed in the image).
pub fn image_import(img: &ImageRef<'_>, cmd: &[String]) -> String {
    let mut args: Vec<String> = vec!["docker".into(), "import".into()];
    if !cmd.is_empty() {
        let json = serde_json::to_string(cmd).expect("strings serialise");
        args.push("--change".into());
        args.push(format!("CMD {json}"));
    }
    args.push("-".into());
    args.push(img.name.to_string());
    format!("set -e; {}; {}", join(args), image_loaded_tail(img))
}

/// `teardown --purge` on a node: removes each shipped image whose record is there, then
/// the record. Images without a record were not shipped by rpiprov and are left alone.
/// Prints `purged I` per image removed; read by [`parse_purged`].
pub fn images_purge(names: &[&str]) -> String {
    let mut s = String::from("set -e");
    for (i, name) in names.iter().enumerate() {
        s.push_str(&format!(
            "\nif [ -e {rec} ]; then if docker image inspect {n} >/dev/null 2>&1; then docker image rm {n} >/dev/null; fi; rm -f {rec}; echo 'purged {i}'; fi",
            rec = quote(&image_record(name)),
            n = quote(name),
        ));
    }
    s
}

/// The images [`images_purge`] removed, from its output and the names it was given.
pub fn parse_purged<'a>(output: &str, names: &'a [String]) -> Vec<&'a str> {
    output
        .lines()
        .filter_map(|line| line.strip_prefix("purged "))
        .filter_map(|i| i.trim().parse::<usize>().ok())
        .filter_map(|i| names.get(i).map(String::as_str))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::script::{ScratchHost, syntax_ok};

    #[test]
    fn image_commands() {
        let img = ImageRef {
            name: "lab/httpd:1",
            sha256: "ab12",
        };
        assert_eq!(
            images_check(&[img]),
            "if [ \"$(cat /var/lib/rpiprov/images/lab_httpd_1.sha256 2>/dev/null)\" = 'ab12 lab/httpd:1' ] && docker image inspect lab/httpd:1 >/dev/null 2>&1; then echo 'image 0 present'; else echo 'image 0 missing'; fi"
        );
        assert_eq!(
            image_load(&img),
            "set -e; docker load; docker image inspect lab/httpd:1 >/dev/null 2>&1 || { echo 'the archive did not provide the image lab/httpd:1' >&2; exit 1; }; mkdir -p /var/lib/rpiprov/images; printf '%s\\n' 'ab12 lab/httpd:1' > /var/lib/rpiprov/images/lab_httpd_1.sha256"
        );
        assert_eq!(
            image_import(
                &img,
                &["httpd".into(), "-f".into(), "-p".into(), "it's 8080".into()]
            ),
            "set -e; docker import --change 'CMD [\"httpd\",\"-f\",\"-p\",\"it'\\''s 8080\"]' - lab/httpd:1; docker image inspect lab/httpd:1 >/dev/null 2>&1 || { echo 'the archive did not provide the image lab/httpd:1' >&2; exit 1; }; mkdir -p /var/lib/rpiprov/images; printf '%s\\n' 'ab12 lab/httpd:1' > /var/lib/rpiprov/images/lab_httpd_1.sha256"
        );
        assert!(image_import(&img, &[]).starts_with("set -e; docker import - lab/httpd:1; "));
        assert_eq!(
            images_purge(&["lab/httpd:1"]),
            "set -e\nif [ -e /var/lib/rpiprov/images/lab_httpd_1.sha256 ]; then if docker image inspect lab/httpd:1 >/dev/null 2>&1; then docker image rm lab/httpd:1 >/dev/null; fi; rm -f /var/lib/rpiprov/images/lab_httpd_1.sha256; echo 'purged 0'; fi"
        );
        for s in [
            images_check(&[img, img]),
            image_load(&img),
            image_import(&img, &["a b".into()]),
            images_purge(&["a", "b c"]),
        ] {
            syntax_ok(&s);
        }
    }

    #[test]
    fn missing_images_are_read_by_index() {
        assert_eq!(
            parse_missing("image 0 present\nimage 1 missing\n", 2),
            Ok(vec![1])
        );
        assert_eq!(
            parse_missing("image 0 present\n", 2),
            Err("the image check did not answer for image 1".into())
        );
    }

    #[test]
    fn an_image_is_loaded_recorded_then_found_present() {
        let d = ScratchHost::new();
        let img = ImageRef {
            name: "lab/a:1",
            sha256: "ab12",
        };
        assert_eq!(
            d.run(&images_check(&[img]), b"").stdout,
            "image 0 missing\n"
        );
        let ran = d.run(&image_load(&img), b"ARCHIVE");
        assert_eq!(
            (ran.code, ran.stdout.as_str()),
            (0, "Loaded image: lab/a:1\n")
        );
        assert_eq!(std::fs::read(d.docker_file("archive")).unwrap(), b"ARCHIVE");
        let rec = std::fs::read_to_string(format!("{}/images/lab_a_1.sha256", d.root())).unwrap();
        assert_eq!(rec, "ab12 lab/a:1\n");
        assert_eq!(
            d.run(&images_check(&[img]), b"").stdout,
            "image 0 present\n"
        );
        // Another archive under the same name is missing; so is a removed image.
        let other = ImageRef {
            name: "lab/a:1",
            sha256: "cd34",
        };
        assert_eq!(
            d.run(&images_check(&[other]), b"").stdout,
            "image 0 missing\n"
        );
        std::fs::remove_file(d.docker_file("image_lab_a_1")).unwrap();
        assert_eq!(
            d.run(&images_check(&[img]), b"").stdout,
            "image 0 missing\n"
        );
        // An archive that does not provide the named image fails, and records nothing.
        let wrong = ImageRef {
            name: "lab/b:1",
            sha256: "ef56",
        };
        let ran = d.run(&image_load(&wrong), b"ARCHIVE");
        assert_eq!(ran.code, 1);
        assert_eq!(
            ran.stderr,
            "the archive did not provide the image lab/b:1\n"
        );
        assert!(!std::path::Path::new(&format!("{}/images/lab_b_1.sha256", d.root())).exists());
    }

    #[test]
    fn purge_removes_only_images_rpiprov_shipped() {
        let d = ScratchHost::new();
        let img = ImageRef {
            name: "lab/a:1",
            sha256: "ab12",
        };
        d.run(&image_load(&img), b"ARCHIVE").ok();
        let names = vec!["lab/a:1".to_string(), "lab/b:1".to_string()];
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let out = d.run(&images_purge(&refs), b"").ok();
        assert_eq!(parse_purged(&out, &names), vec!["lab/a:1"]);
        assert!(d.calls().contains("image rm lab/a:1\n"));
        // lab/b:1 had no record: not rpiprov's, never removed.
        assert!(!d.calls().contains("image rm lab/b:1"));
        let rec = format!("{}/images/lab_a_1.sha256", d.root());
        assert!(!std::path::Path::new(&rec).exists());
        assert_eq!(d.run(&images_purge(&refs), b"").ok(), "");
    }

    #[test]
    fn purged_images_are_read_by_index() {
        let names = vec!["lab/a:1".to_string(), "lab/b:1".to_string()];
        assert_eq!(
            parse_purged("purged 1\nnoise\npurged 7\n", &names),
            vec!["lab/b:1"]
        );
    }
}
