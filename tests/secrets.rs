//! Issue 18: while rpiprov holds a secret (a sudo password, a join token), its process is
//! not dumpable: no core file holds it, and no other process of the user may trace it or
//! read its memory. Alone in its binary: the process-wide state is this test's own.

use rpiprov::secret::Secret;

fn dumpable() -> i32 {
    // SAFETY: PR_GET_DUMPABLE reads a flag of this process.
    unsafe { libc::prctl(libc::PR_GET_DUMPABLE, 0, 0, 0, 0) }
}

#[test]
fn the_process_is_not_dumpable_while_a_secret_lives() {
    assert_eq!(dumpable(), 1, "dumpable before any secret");
    let password = Secret::new("sudo-password");
    assert_eq!(dumpable(), 0);
    let token = password.clone();
    drop(password);
    assert_eq!(dumpable(), 0, "a copy still lives");
    drop(token);
    assert_eq!(dumpable(), 1, "dumpable again once no secret is left");
    // Held across threads the same way.
    let held: Vec<Secret> = (0..8).map(|i| Secret::new(format!("t{i}"))).collect();
    assert_eq!(dumpable(), 0);
    let handles: Vec<_> = held
        .into_iter()
        .map(|s| std::thread::spawn(move || drop(s)))
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(dumpable(), 1);
}
