//! The fault suite (issue 14), the manager and rpiprov itself failing in the middle of a
//! deploy, on one lab of three Docker nodes (pi1 the only manager, holding the lock and
//! the stacks' file sets). The lab playbook gets a fourth stack, `big`, whose config file
//! weighs 300 KB: with pi1's link throttled its upload lasts seconds, long enough to be
//! interrupted in the middle.
//! - pi1's link cut during the convergence wait for a few seconds: the lost connection is
//!   noticed, reconnected, and the wait resumes: exit 0;
//! - pi1's link cut for good during `docker stack deploy`: "pi1 unreachable since ..."
//!   long before the stack's timeout; restored, the rerun takes over the lock the run could
//!   not release, and converges;
//! - SIGINT during an upload and during the convergence wait: the lock released, no
//!   temporary file left, the summary says how far the stack got;
//! - SIGKILL during an upload: the manager keeps the old file set whole, and the next run
//!   takes the lock over, saying so, and deploys the new one;
//! - SIGKILL during the convergence wait: the next run deploys the stack again and
//!   converges.

mod support;

use std::time::{Duration, Instant};

use rpiprov::lab::Lab;
use support::faults::{
    Running, clean, current_compose, lock_held, replicas, rerun_converges, run, sh, short_timeouts,
    temp_files, throttle, touch_stack, wait_listed, wait_until,
};
use support::fleet::Fleet;

const SECOND: Duration = Duration::from_secs(1);
const SIGINT: i32 = libc::SIGINT;
const SIGKILL: i32 = libc::SIGKILL;

/// The lab playbook's services and `big`, each running everywhere it should.
const CONVERGED: [&str; 4] = ["api_api 2/2", "big_big 1/1", "echo_echo 1/1", "web_web 3/3"];

/// A config file of 300 KB that nothing compresses, with `mark` on its first line.
fn write_big_config(fleet: &Fleet, mark: &str) {
    let mut random = vec![0u8; 150 * 1024];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut random))
        .unwrap();
    let body = hex::encode(&random);
    std::fs::write(
        fleet.dir.join("stacks/big.conf"),
        format!("# {mark}\n{body}\n"),
    )
    .unwrap();
}

fn add_big_stack(fleet: &Fleet) {
    std::fs::write(
        fleet.dir.join("stacks/big.yml"),
        "version: \"3.8\"\nservices:\n  big:\n    image: rpiprov-lab/busybox:1\n    command: [\"/bin/httpd\", \"-f\", \"-p\", \"8083\", \"-h\", \"/www\"]\n    stop_grace_period: 1s\n    configs:\n      - source: big\n        target: /etc/big.conf\n    deploy:\n      replicas: 1\n      endpoint_mode: dnsrr\nconfigs:\n  big:\n    file: ./big.conf\n",
    )
    .unwrap();
    write_big_config(fleet, "first");
    let playbook = fleet.read("playbook.toml");
    std::fs::write(
        fleet.dir.join("playbook.toml"),
        format!(
            "{playbook}\n[[stack]]\nname = \"big\"\nfile = \"stacks/big.yml\"\ntimeout = \"{}\"\n",
            support::faults::STACK_TIMEOUT
        ),
    )
    .unwrap();
}

/// The first line of the config file of the set `big` is deployed from on pi1.
fn deployed_mark(fleet: &Fleet) -> String {
    current_compose(fleet, "pi1", "big", "big.conf")
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn manager_cut_or_rpiprov_interrupted_leave_nothing_a_rerun_cannot_repair() {
    let fleet = Fleet::up(&["--nodes", "3", "--bare", "0"]);
    short_timeouts(&fleet);
    add_big_stack(&fleet);
    let lab = Lab::open(&fleet.dir).expect("the lab opens");
    run(&fleet, &["bootstrap"], 120 * SECOND).expect_code(0);
    rerun_converges(&fleet, 150 * SECOND, &CONVERGED);
    assert_eq!(deployed_mark(&fleet), "# first");

    // 1. pi1's link cut for 16 s during the convergence wait: noticed by keepalives,
    //    reconnected once it is back (within ssh.reconnect_timeout), the wait resumes.
    touch_stack(&fleet, "web", "1");
    let mut deploy = Running::start(&fleet, &["-v", "deploy"]);
    deploy.wait_for("stack web: wait for convergence", 60 * SECOND);
    lab.set_link("pi1", false).unwrap();
    // The fault itself lasts this long: past the keepalives' ~12 s, within the 8 s after.
    std::thread::sleep(16 * SECOND);
    lab.set_link("pi1", true).unwrap();
    let ended = deploy.finish(150 * SECOND);
    ended.expect_code(0).within(100 * SECOND);
    assert_eq!(replicas(&fleet, "pi1"), CONVERGED, "{}", ended.all());
    clean(&fleet);

    // 2. pi1's link cut for good during docker stack deploy: the run ends long before the
    //    stack's timeout, saying since when pi1 is unreachable.
    touch_stack(&fleet, "web", "2");
    let mut deploy = Running::start(&fleet, &["-v", "deploy"]);
    deploy.wait_for("stack web: docker stack deploy", 60 * SECOND);
    lab.set_link("pi1", false).unwrap();
    let ended = deploy.finish(150 * SECOND);
    ended
        .expect_code(1)
        .within(50 * SECOND)
        .says("pi1 unreachable since");
    lab.set_link("pi1", true).unwrap();
    for node in ["pi2", "pi3"] {
        wait_listed(&fleet, "pi1", node, "Ready");
    }
    // The run could not release its lock on pi1; its process is gone, so the rerun takes
    // it over, saying so.
    assert!(lock_held(&fleet, "pi1"), "{}", ended.all());
    rerun_converges(&fleet, 150 * SECOND, &CONVERGED)
        .says("took over the deploy lock left by a run that is gone");

    // 3. SIGINT while big's file set is uploaded (pi1's link throttled): the run stops,
    //    releases the lock, leaves no temporary file, and says what it did not do.
    write_big_config(&fleet, "second");
    throttle(&fleet, "pi1", Some(400));
    let mut deploy = Running::start(&fleet, &["-v", "deploy"]);
    deploy.wait_for("stack big: upload", 60 * SECOND);
    std::thread::sleep(SECOND);
    deploy.signal(SIGINT);
    let ended = deploy.finish(60 * SECOND);
    ended
        .expect_code(130)
        .within(50 * SECOND)
        .says("interrupted during the upload of its files");
    assert_eq!(deployed_mark(&fleet), "# first", "{}", ended.all());
    throttle(&fleet, "pi1", None);
    wait_until("no temporary file on pi1", 20 * SECOND, || {
        temp_files(&fleet, "pi1").is_empty()
    });
    clean(&fleet);

    // 4. SIGINT during big's convergence wait: the lock released, the summary says the
    //    wait was interrupted.
    let mut deploy = Running::start(&fleet, &["-v", "deploy"]);
    deploy.wait_for("stack big: wait for convergence", 60 * SECOND);
    deploy.signal(SIGINT);
    let ended = deploy.finish(60 * SECOND);
    ended
        .expect_code(130)
        .within(50 * SECOND)
        .says("interrupted during the wait for convergence");
    assert_eq!(deployed_mark(&fleet), "# second", "{}", ended.all());
    clean(&fleet);
    rerun_converges(&fleet, 150 * SECOND, &CONVERGED);

    // 5. SIGKILL while big's file set is uploaded: pi1 keeps the set it had, whole; the
    //    lock stays (nothing could release it) and the next run from here takes it over,
    //    saying so, then deploys the new set.
    write_big_config(&fleet, "third");
    throttle(&fleet, "pi1", Some(400));
    let mut deploy = Running::start(&fleet, &["-v", "deploy"]);
    deploy.wait_for("stack big: upload", 60 * SECOND);
    std::thread::sleep(SECOND);
    let killed = Instant::now();
    deploy.signal(SIGKILL);
    let ended = deploy.finish(20 * SECOND);
    assert_eq!(ended.code(), None, "{}", ended.all());
    throttle(&fleet, "pi1", None);
    assert_eq!(deployed_mark(&fleet), "# second");
    // What the killed upload wrote goes once pi1's sshd sees the connection gone.
    wait_until("no temporary file on pi1", 30 * SECOND, || {
        temp_files(&fleet, "pi1").is_empty()
    });
    assert!(lock_held(&fleet, "pi1"));
    let owner = sh(&fleet, "pi1", "cat /var/lib/rpiprov/lock/owner");
    let ended = rerun_converges(&fleet, 150 * SECOND, &CONVERGED);
    ended.says("took over the deploy lock left by a run that is gone");
    assert_eq!(deployed_mark(&fleet), "# third", "{}", ended.all());
    assert!(killed.elapsed() < 200 * SECOND, "{owner}");

    // 6. SIGKILL during web's convergence wait: the deploy was not recorded, so the next
    //    run deploys web again and waits for it: it converges, taking the lock over.
    touch_stack(&fleet, "web", "6");
    let mut deploy = Running::start(&fleet, &["-v", "deploy"]);
    deploy.wait_for("stack web: wait for convergence", 60 * SECOND);
    deploy.signal(SIGKILL);
    assert_eq!(deploy.finish(20 * SECOND).code(), None);
    let ended = rerun_converges(&fleet, 150 * SECOND, &CONVERGED);
    ended
        .says("took over the deploy lock left by a run that is gone")
        .says("stack web   changed");
    assert!(
        current_compose(&fleet, "pi1", "web", "web.yml").contains("FAULT: \"6\""),
        "{}",
        ended.all()
    );
}
