//! The command line: `-t` checks, `--version`, and refusing to start on a bad config.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::BIN;

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("cannot run aralez")
}

/// Writes main.yaml and upstreams.yaml to a temp dir and runs `aralez -t` on them.
fn check(main: &str, upstreams: &str) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("main.yaml"), main).unwrap();
    std::fs::write(dir.path().join("upstreams.yaml"), upstreams).unwrap();
    let out = run(&["-t", "-c", dir.path().join("main.yaml").to_str().unwrap()]);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const GOOD: &str = "upstreams:\n  a.com:\n    paths:\n      \"/\":\n        servers: [\"127.0.0.1:8000\", \"127.0.0.1:8001\"]\n      \"/api\":\n        servers: [\"127.0.0.1:8000\"]\n  b.com:\n    paths:\n      \"/\":\n        servers: [\"localhost:9000\"]\n";

#[test]
fn good_config_passes_with_a_summary() {
    let (code, stdout, stderr) = check("upstreams_conf: upstreams.yaml\n", GOOD);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.starts_with("configuration ok\n"), "{stdout}");
    assert!(stdout.contains("2 hosts, 3 routes"), "{stdout}");
}

#[test]
fn shipped_example_config_passes() {
    let main = Path::new(env!("CARGO_MANIFEST_DIR")).join("etc/main.yaml");
    let out = run(&["-t", "-c", main.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn broken_files_list_every_error_with_position() {
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "",
            "upstreams:\n  a.com:\n    paths:\n      \"/api\":\n        servers:\n          - \"10.0.0.2:80\"\n          - \"10.0.0.1\"\n",
            &["upstreams.yaml:7:13: upstreams.a.com.paths./api.servers[1]: \"10.0.0.1\" has no port"],
        ),
        (
            "",
            "provider: etcd\na.com:\n  paths:\n    api:\n      servers: []\n",
            &[
                "upstreams.yaml:1:11: provider: unknown provider \"etcd\"",
                "upstreams.yaml:4:5: a.com.paths.api: path \"api\" must start with `/`",
            ],
        ),
        (
            "",
            "a.com:\n  paths:\n    \"/\":\n      servers: [\"h:1\"]\nA.com:\n  paths:\n    \"/\":\n      servers: [\"h:1\"]\n      headers: [\"bad header\"]\n",
            &[
                "upstreams.yaml:5:1: A.com: host \"A.com\" is listed twice",
            ],
        ),
        (
            "",
            "a.com:\n  paths:\n    \"/\":\n      to_https: true\n      servers: []\n",
            &[
                "upstreams.yaml:4:17: a.com.paths./.to_https: to_https needs a TLS listener",
                "upstreams.yaml:5:16: a.com.paths./.servers: the servers list is empty",
            ],
        ),
        (
            "",
            "a.com:\n  paths:\n    \"/\":\n      servers: [\"no-such-host.invalid:80\"]\n",
            &["upstreams.yaml:4:17: a.com.paths./.servers[0]: cannot resolve \"no-such-host.invalid\""],
        ),
        ("", "upstreams: [\n", &["upstreams.yaml:2:1: invalid YAML"]),
        (
            "threds: 2\nlog_level: chatty\n",
            GOOD,
            &["main.yaml:1:1: threds: unknown key `threds`; did you mean `threads`?"],
        ),
        (
            "log_level: chatty\nproxy_address_http: \"6193\"\n",
            GOOD,
            &[
                "main.yaml:1:12: log_level: \"chatty\" is not one of",
                "main.yaml:2:21: proxy_address_http: \"6193\" is not an IP:port address",
            ],
        ),
        ("upstreams_conf: missing.yaml\n", GOOD, &["missing.yaml: cannot read"]),
        (
            "proxy_address_http: 127.0.0.1:8080\nconfig_address: 127.0.0.1:8080\n",
            GOOD,
            &["main.yaml:2:17: config_address: 127.0.0.1:8080 is also proxy_address_http's port; each listener needs its own"],
        ),
    ];
    for (main, upstreams, expected) in cases {
        let (code, stdout, stderr) = check(main, upstreams);
        assert_eq!(
            code, 1,
            "should fail:\n{main}\n{upstreams}\nstdout: {stdout}"
        );
        assert!(!stdout.contains("configuration ok"), "{stdout}");
        for want in *expected {
            assert!(stderr.contains(want), "expected {want:?} in:\n{stderr}");
        }
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn version_is_printed() {
    let out = run(&["--version"]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("aralez {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn refuses_to_start_on_a_bad_config() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("main.yaml"), "upstreams_conf: u.yaml\n").unwrap();
    std::fs::write(
        dir.path().join("u.yaml"),
        "a.com:\n  paths:\n    \"/\":\n      servers: [\"x\"]\n",
    )
    .unwrap();
    let out = run(&["-c", dir.path().join("main.yaml").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("u.yaml:4:17: a.com.paths./.servers[0]: \"x\" has no port"),
        "{stderr}"
    );
}

#[test]
fn daemon_and_upgrade_flags_are_accepted() {
    let out = run(&["-t", "-d", "-u", "-c", "/nonexistent/main.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("/nonexistent/main.yaml: cannot read"),
        "{stderr}"
    );
}
