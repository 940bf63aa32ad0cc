//! The `loadtest` binary from outside.

#[test]
fn help_exits_zero() {
    for args in [&["--help"][..], &["spike", "--help"]] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_loadtest"))
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}");
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .args(["spike", "--help"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in ["--target", "--users", "--over", "--report"] {
        assert!(text.contains(flag), "{flag} missing from {text}");
    }
}
