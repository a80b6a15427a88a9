//! Benchmark driver for rpiprov's SSH layer: connects to every host of an inventory (one
//! connection each, at most `--parallel` handshakes at once, as the commands do), then runs
//! `--count` commands one after another on each host over that connection, as bootstrap and
//! deploy run their steps. Prints one line: hosts, commands, seconds, failures.
//!
//! `cargo run --release --example exec_bench -- INVENTORY COUNT PARALLEL`
//! (`scripts/bench.sh` runs it beside OpenSSH and Ansible on the same lab nodes.)

use std::sync::Arc;
use std::time::Instant;

use rpiprov::remote::{self, ConnectOptions, ExecRequest, Remote, Target};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(inv), Some(count), Some(parallel)) = (args.get(1), args.get(2), args.get(3)) else {
        eprintln!("usage: exec_bench INVENTORY COUNT PARALLEL");
        std::process::exit(2);
    };
    let count: usize = count.parse().expect("COUNT is a number");
    let parallel: usize = parallel.parse().expect("PARALLEL is a number");
    let loaded = rpiprov::config::load(inv.as_ref(), None).unwrap_or_else(|e| {
        for d in e {
            eprintln!("{d}");
        }
        std::process::exit(2)
    });
    let opts = Arc::new(ConnectOptions::from_settings(&loaded.inventory.ssh, false));
    let start = Instant::now();
    let hosts: Vec<Target> = loaded
        .inventory
        .hosts
        .iter()
        .map(Target::from_host)
        .collect();
    let results = rpiprov::exec::parallel_map(hosts, parallel, |t| {
        let opts = opts.clone();
        async move {
            let s = remote::connect(&t, &opts)
                .await
                .map_err(|e| e.to_string())?;
            for i in 0..count {
                let cmd = format!("mkdir -p /tmp/rpiprov-bench/{i}");
                let out = s
                    .exec(ExecRequest::new(cmd))
                    .await
                    .map_err(|e| e.to_string())?;
                if !out.success() {
                    return Err(out.stderr_str());
                }
            }
            Ok::<(), String>(())
        }
    })
    .await;
    let failed: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    println!(
        "hosts={} commands_per_host={count} seconds={:.2} failed={}",
        results.len(),
        start.elapsed().as_secs_f64(),
        failed.len()
    );
    if let Some(e) = failed.first() {
        eprintln!("first failure: {e}");
    }
}
