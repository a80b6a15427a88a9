//! POSIX shell quoting. SSH has no argv: the remote side runs one string through the
//! login shell, so every argument that rpiprov sends is quoted here.

/// Quotes one argument for a POSIX shell. Plain words stay as they are so that command lines
/// in logs remain readable; anything else is wrapped in single quotes, each embedded single
/// quote closed, escaped and reopened.
pub fn quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:=@,+%".contains(&b));
    if plain {
        return arg.to_string();
    }
    let mut out = String::with_capacity(arg.len() + 2);
    out.push('\'');
    for c in arg.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

/// Joins arguments into one command line, each quoted.
pub fn join<I, S>(args: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    args.into_iter()
        .map(|a| quote(a.as_ref()))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn plain_words_are_left_alone() {
        assert_eq!(quote("docker"), "docker");
        assert_eq!(quote("--label-add=zone=rack1"), "--label-add=zone=rack1");
        assert_eq!(quote("/etc/docker/daemon.json"), "/etc/docker/daemon.json");
    }

    #[test]
    fn everything_else_is_single_quoted() {
        assert_eq!(quote(""), "''");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), "'it'\\''s'");
        assert_eq!(quote("$(reboot)"), "'$(reboot)'");
        assert_eq!(quote("~"), "'~'");
    }

    #[test]
    fn join_quotes_each_argument() {
        assert_eq!(
            join(["docker", "network", "create", "a b;rm -rf /"]),
            "docker network create 'a b;rm -rf /'"
        );
    }

    /// Any string must come back byte for byte through a real `sh -c`.
    #[test]
    fn round_trip_through_a_real_shell() {
        let nasty = [
            "",
            " ",
            "plain",
            "a b",
            "'",
            "''",
            "\"",
            "\\",
            "$HOME",
            "`id`",
            "$(id)",
            "a;b",
            "a&&b",
            "a|b",
            "*",
            "?",
            "[a]",
            "~root",
            "#comment",
            "line1\nline2",
            "tab\there",
            "!event",
            "{a,b}",
            "ünïcödé ✓",
            "-n",
            "-e \\n",
            "it's \"quoted\" $(x) `y` \\z",
        ];
        for s in nasty {
            let script = format!("printf '%s' {}", quote(s));
            let out = Command::new("sh").arg("-c").arg(&script).output().unwrap();
            assert!(out.status.success(), "sh failed on {script:?}");
            assert_eq!(String::from_utf8(out.stdout).unwrap(), s, "round trip of {s:?}");
        }
    }

    #[test]
    fn round_trip_of_every_byte_value_except_nul() {
        let all: String = (1u8..=127).map(char::from).collect();
        let script = format!("printf '%s' {}", quote(&all));
        let out = Command::new("sh").arg("-c").arg(&script).output().unwrap();
        assert_eq!(String::from_utf8(out.stdout).unwrap(), all);
    }
}
