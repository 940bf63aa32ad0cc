//! The `origin-stub` binary from outside.

#[test]
fn help_exits_zero() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_origin-stub"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in ["--listen", "--capacity", "--service-time-ms"] {
        assert!(text.contains(flag), "{flag} missing from {text}");
    }
}
