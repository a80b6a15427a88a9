//! Docker's own notices: text the Docker CLI prints on stderr around a command's real
//! output and errors ("Since --detach=false was not specified ...", "image X could not be
//! accessed on a registry to record its digest ..."). They are advice for people typing
//! `docker`, not what went wrong, so [`without_notices`] keeps them out of the error text
//! rpiprov shows, unless there is nothing else (then they are the error).

/// The start of every line Docker prints as a notice. The registry-digest notice spans
/// four lines, each recognised on its own.
const NOTICE_LINES: &[&str] = &[
    // `docker service create/update` (and `stack deploy` on newer clients).
    "Since --detach=false was not specified, tasks will be created in the background.",
    "In a future release, --detach=false will become the default.",
    // `docker stack deploy` of an image no registry knows (shipped images).
    "its digest. Each node will access ",
    "possibly leading to different nodes running different",
    "versions of the image.",
    // `docker stack deploy` of keys it ignores (`rpiprov check` warns about those, by line).
    "Ignoring unsupported options: ",
    "Ignoring deprecated options: ",
];

/// Whether a line is one of Docker's notices.
pub fn is_notice(line: &str) -> bool {
    let l = line.trim();
    NOTICE_LINES.iter().any(|n| l.starts_with(n))
        || (l.starts_with("image ") && l.ends_with("could not be accessed on a registry to record"))
}

/// `text` without Docker's notices; `text` itself when the notices are all there is.
pub fn without_notices(text: &str) -> String {
    let kept: Vec<&str> = text.lines().filter(|l| !is_notice(l)).collect();
    if kept.iter().all(|l| l.trim().is_empty()) {
        return text.to_string();
    }
    let mut out = kept.join("\n");
    if text.ends_with('\n') {
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What Docker 20.10's `docker stack deploy` printed for the lab's shipped image,
    /// followed by a real error.
    const DEPLOY_FAILED: &str = "Ignoring unsupported options: restart\n\
image rpiprov-lab/busybox:1 could not be accessed on a registry to record\n\
its digest. Each node will access rpiprov-lab/busybox:1 independently,\n\
possibly leading to different nodes running different\n\
versions of the image.\n\
Creating service web_web\n\
failed to create service web_web: Error response from daemon: network DATA not found\n";

    #[test]
    fn notices_are_left_out_and_the_error_kept() {
        assert_eq!(
            without_notices(DEPLOY_FAILED),
            "Creating service web_web\n\
             failed to create service web_web: Error response from daemon: network DATA not found\n"
        );
        assert_eq!(
            without_notices(
                "Since --detach=false was not specified, tasks will be created in the background.\n\
                 In a future release, --detach=false will become the default.\n\
                 Error response from daemon: rpc error: code = InvalidArgument\n"
            ),
            "Error response from daemon: rpc error: code = InvalidArgument\n"
        );
    }

    #[test]
    fn notices_that_are_all_there_is_are_the_error() {
        let only =
            "Since --detach=false was not specified, tasks will be created in the background.\n";
        assert_eq!(without_notices(only), only);
        assert_eq!(without_notices(""), "");
    }

    #[test]
    fn lines_that_merely_mention_the_words_stay() {
        for line in [
            "image foo:1 not found",
            "Error: versions of the image differ",
            "the image could not be accessed on a registry to record: denied",
        ] {
            assert!(!is_notice(line), "{line}");
        }
    }
}
