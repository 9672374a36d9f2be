//! One agent per node: a second copy with the same pins, or any process already
//! writing the flow-log file (the incumbent's default path), is refused with a message
//! that says who holds the node.

use std::sync::Mutex;

use agent::guard::InstanceGuard;

/// The tests run one at a time: a child forked by one test inherits, until it
/// execs, the other test's locked descriptor, which would make a lock that was just
/// released look held.
static SERIAL: Mutex<()> = Mutex::new(());

#[test]
fn a_second_agent_on_the_same_pins_is_refused() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let pins = dir.path().join("pins");
    let log = dir.path().join("flows.log");
    let first = InstanceGuard::acquire(&pins, &log).expect("first agent");
    let err = InstanceGuard::acquire(&pins, &log)
        .expect_err("second agent")
        .to_string();
    assert!(
        err.contains("another netpol-agent already holds this node"),
        "{err}"
    );
    assert!(
        err.contains(&std::process::id().to_string()),
        "names the holder's pid: {err}"
    );
    drop(first);
    InstanceGuard::acquire(&pins, &log).expect("free again once the first is gone");
}

#[test]
fn a_process_writing_the_flow_log_file_is_refused() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("network-policy-agent.log");
    std::fs::write(&log, b"").unwrap();
    // Another process (standing in for the incumbent) holds the file open.
    let mut holder = std::process::Command::new("sh")
        .arg("-c")
        .arg("exec 3>>\"$0\"; sleep 30")
        .arg(&log)
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    let err = InstanceGuard::acquire(&dir.path().join("pins"), &log)
        .expect_err("file in use")
        .to_string();
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert!(
        err.contains(&holder.id().to_string()) && err.contains("flow-log file"),
        "{err}"
    );
}
