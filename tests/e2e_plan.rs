//! End to end on the lab's default fleet (issue 12): `rpiprov plan` says exactly what
//! the command then does, and changes nothing itself. Before a first bootstrap it lists
//! every step on every host and the fleet is the same afterwards (swarm, files, lock);
//! bootstrap then does exactly those steps. The same for a first deploy; after a stack
//! file is edited here, `plan deploy` shows that file's diff only, and deploy redeploys
//! that stack only; `plan teardown` lists what teardown removes.

mod support;

use serde_json::Value;
use support::swarm::{Lab, json};

/// What a plan or a command could change on the nodes: swarm membership, services,
/// networks, Docker itself, and every file rpiprov or Docker's settings keep (names,
/// sizes, modification times; the deploy lock among them).
fn snapshot(lab: &Lab) -> String {
    let script = "docker info --format '{{.Swarm.LocalNodeState}} {{.Swarm.Cluster.ID}}' 2>/dev/null; \
        docker service ls --format '{{.Name}} {{.Image}}' 2>/dev/null | sort; \
        docker network ls --format '{{.Name}}' 2>/dev/null | sort; \
        command -v docker || echo 'no docker'; \
        find /var/lib/rpiprov /etc/docker -exec stat -c '%n %s %Y' {} + 2>/dev/null | sort; true";
    lab.inventory
        .hosts
        .iter()
        .map(|h| format!("== {}\n{}", h.name, lab.on(&h.name, script)))
        .collect()
}

/// `(row, steps)` of a plan's `--json`.
fn planned(doc: &Value) -> Vec<(String, Vec<String>)> {
    doc["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let steps = r["steps"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_str().unwrap().to_string())
                .collect();
            (r["row"].as_str().unwrap().to_string(), steps)
        })
        .collect()
}

/// `(row, changed)` of a command's `--json`, for the rows that changed something.
fn done(doc: &Value) -> Vec<(String, Vec<String>)> {
    let mut rows: Vec<(String, Vec<String>)> = doc["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["outcome"] == "changed")
        .map(|r| {
            let changed = r["changed"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_str().unwrap().to_string())
                .collect();
            (r["host"].as_str().unwrap().to_string(), changed)
        })
        .collect();
    rows.sort();
    rows
}

#[test]
fn plan_says_what_the_command_then_does_and_changes_nothing() {
    let lab = Lab::up();

    // 1. Before a first bootstrap: every step, on every host; nothing changed.
    let before = snapshot(&lab);
    let doc = json(&lab.ok(&["plan", "bootstrap", "--json"], 0));
    assert_eq!(doc["problems"], serde_json::json!([]), "{doc:#}");
    let mut plan = planned(&doc);
    assert_eq!(snapshot(&lab), before, "plan bootstrap changed the fleet");
    let steps = |row: &str| -> Vec<String> {
        plan.iter()
            .find(|(r, _)| r == row)
            .map(|(_, s)| s.clone())
            .unwrap_or_default()
    };
    let pi1 = steps("pi1");
    assert_eq!(
        pi1[0],
        format!("swarm init (advertise {})", lab.addr("pi1"))
    );
    for want in [
        "label pi1 zone=a",
        "create network DATA",
        "create network INTERCO",
    ] {
        assert!(pi1.iter().any(|s| s == want), "{want} not in {pi1:?}");
    }
    assert_eq!(steps("pi2"), ["join swarm as worker"]);
    assert_eq!(
        steps("pi3"),
        [
            "install docker (docker.io package)",
            "start docker",
            "join swarm as worker"
        ]
    );
    // The table says the same, and that nothing was changed.
    let table = lab.ok(&["bootstrap", "--dry-run"], 0);
    assert!(
        table.contains("pi3  install docker (docker.io package)"),
        "{table}"
    );
    assert!(table.ends_with("; nothing was changed\n"), "{table}");

    // Bootstrap then does exactly those steps.
    let doc = json(&lab.ok(&["bootstrap", "--json"], 0));
    plan.sort();
    assert_eq!(done(&doc), plan);
    lab.assert_formed();

    // 2. A first deploy: images, uploads, every stack with its reason; nothing changed.
    let before = snapshot(&lab);
    let doc = json(&lab.ok(&["plan", "deploy", "--json"], 0));
    let mut plan = planned(&doc);
    assert_eq!(snapshot(&lab), before, "plan deploy changed the fleet");
    for st in &lab.playbook.stacks {
        let row = doc["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["row"] == format!("stack {}", st.name))
            .unwrap_or_else(|| panic!("no stack {} in {doc:#}", st.name));
        assert_eq!(row["why"], "not deployed by rpiprov before");
        assert_eq!(row["files"][0]["change"], "new", "{row:#}");
    }
    let doc = json(&lab.ok(&["deploy", "--json"], 0));
    // The stacks' rows say `deployed (WHY); N service(s) converged` where the plan said
    // `docker stack deploy (WHY)`: compared by their reason.
    let norm = |rows: Vec<(String, Vec<String>)>| -> Vec<(String, Vec<String>)> {
        let mut rows: Vec<(String, Vec<String>)> = rows
            .into_iter()
            .map(|(r, steps)| {
                let steps = steps
                    .into_iter()
                    .map(|s| {
                        s.replace("docker stack deploy (", "deployed (")
                            .split(';')
                            .next()
                            .unwrap()
                            .to_string()
                    })
                    .collect();
                (r, steps)
            })
            .collect();
        rows.sort();
        rows
    };
    plan.sort();
    assert_eq!(norm(done(&doc)), norm(plan));

    // 3. A stack file edited here: the plan shows that file's diff, and only it.
    let echo = lab.fleet.dir.join("stacks/echo.yml");
    let original = std::fs::read_to_string(&echo).unwrap();
    let edited = original.replace(
        "replicas: 1\n",
        "replicas: 1\n      labels: {edited: \"yes\"}\n",
    );
    std::fs::write(&echo, &edited).unwrap();
    let before = snapshot(&lab);
    let doc = json(&lab.ok(&["plan", "deploy", "--json"], 0));
    assert_eq!(snapshot(&lab), before, "plan deploy changed the fleet");
    assert_eq!(
        planned(&doc),
        vec![
            (
                "pi1".to_string(),
                vec![format!("upload echo (1 file(s), {} bytes)", edited.len())]
            ),
            (
                "stack echo".to_string(),
                vec!["docker stack deploy (changed since its last deploy)".to_string()]
            ),
        ]
    );
    let files = doc["rows"][1]["files"].as_array().unwrap();
    assert_eq!(files.len(), 1, "{doc:#}");
    assert_eq!(files[0]["path"], "echo/echo.yml");
    assert_eq!(files[0]["change"], "changed");
    let diff = files[0]["diff"].as_str().unwrap();
    assert!(
        diff.starts_with("--- manager/echo/echo.yml\n+++ local/echo/echo.yml\n@@ "),
        "{diff}"
    );
    let changed: Vec<&str> = diff
        .lines()
        .filter(|l| {
            (l.starts_with('+') || l.starts_with('-'))
                && !l.starts_with("+++")
                && !l.starts_with("---")
        })
        .collect();
    assert_eq!(changed, ["+      labels: {edited: \"yes\"}"], "{diff}");
    let table = lab.ok(&["deploy", "--dry-run"], 0);
    assert!(
        table.contains("+      labels: {edited: \"yes\"}"),
        "{table}"
    );
    let doc = json(&lab.ok(&["deploy", "--json"], 0));
    assert_eq!(
        done(&doc).into_iter().map(|(r, _)| r).collect::<Vec<_>>(),
        ["pi1", "stack echo"]
    );

    // 4. Teardown: the plan lists what it removes, in its order; teardown removes that.
    let doc = json(&lab.ok(&["plan", "teardown", "--json"], 0));
    let rows: Vec<String> = planned(&doc).into_iter().map(|(r, _)| r).collect();
    assert_eq!(
        rows,
        [
            "stack echo",
            "stack api",
            "stack web",
            "network INTERCO",
            "network DATA"
        ]
    );
    let doc = json(&lab.ok(&["teardown", "--yes", "--json"], 0));
    let mut removed: Vec<String> = done(&doc).into_iter().map(|(r, _)| r).collect();
    let mut rows = rows;
    removed.sort();
    rows.sort();
    assert_eq!(removed, rows);
}
