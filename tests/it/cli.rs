//! The command line: `-t` checks, `--version`, and refusing to start on a bad config.

use crate::common;

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

/// main.yaml with one error of each kind (unknown key, wrong type, bad value, out of range,
/// and everything it names outside itself), and an upstreams file whose errors used to hide
/// each other (a refused path key over its servers, a name that does not resolve).
const MANY_MAIN: &str = "threds: 2\nlog_level: chatty\nthreads: many\nkeepalive_timeout: 99999999999\nuser: no-such-user-aralez\ngroup: no-such-group-aralez\nproxy_address_tls: 127.0.0.1:18443\nproxy_certificates: missing-certs\nconfig_tls_address: 127.0.0.1:18444\nconfig_tls_certificate: nope.crt\nconfig_tls_key_file: nope.key\naccess_log: /nonexistent-dir/access.log\nerror_log: /nonexistent-dir/error.log\npid_file: /nonexistent-dir/aralez.pid\nupstreams_conf: upstreams.yaml\n";
const MANY_UPSTREAMS: &str = "upstreams:\n  a.com:\n    paths:\n      api:\n        servers: [\"x:0\"]\n        read_timeout: 18446744073709551615\n      \"/\":\n        servers: [\"no-such-host.invalid:80\"]\n  \"a*.com\":\n    paths:\n      \"/\":\n        servers: [\"127.0.0.1:1\"]\n";
const MANY_ERRORS: &[&str] = &[
    "main.yaml:1:1: threds: unknown key `threds`; did you mean `threads`?",
    "main.yaml:2:12: log_level: \"chatty\" is not one of",
    "main.yaml:3:10: threads: invalid type: string \"many\"",
    "main.yaml:4:20: keepalive_timeout: 99999999999 is out of range: from 1 to 604800 seconds",
    "main.yaml:5:7: user: no user named \"no-such-user-aralez\"",
    "main.yaml:6:8: group: no group named \"no-such-group-aralez\"",
    "main.yaml:8:21: proxy_certificates: ",
    "missing-certs: cannot read the certificate folder",
    "main.yaml:10:25: config_tls_certificate: cannot read ",
    "main.yaml:11:22: config_tls_key_file: cannot read ",
    "main.yaml:12:13: access_log: /nonexistent-dir/access.log cannot be opened",
    "main.yaml:13:12: error_log: /nonexistent-dir/error.log cannot be opened",
    "main.yaml:14:11: pid_file: folder /nonexistent-dir does not exist",
    "upstreams.yaml:4:7: upstreams.a.com.paths.api: path \"api\" must start with `/`",
    "upstreams.yaml:5:19: upstreams.a.com.paths.api.servers[0]: \"x:0\": port \"0\" is not a number",
    "upstreams.yaml:6:23: upstreams.a.com.paths.api.read_timeout: 18446744073709551615 is out of range",
    "upstreams.yaml:8:19: upstreams.a.com.paths./.servers[0]: cannot resolve \"no-such-host.invalid\"",
    "upstreams.yaml:9:3: upstreams.a*.com: host \"a*.com\": a wildcard is only",
];

#[test]
fn check_reports_every_error_of_both_files_in_one_run() {
    let (code, stdout, stderr) = check(MANY_MAIN, MANY_UPSTREAMS);
    assert_eq!(code, 1, "{stdout}{stderr}");
    for want in MANY_ERRORS {
        assert!(stderr.contains(want), "expected {want:?} in:\n{stderr}");
    }
    assert!(
        stderr.contains(&format!(
            "configuration test failed ({} errors)",
            MANY_ERRORS.len() - 1
        )),
        "{stderr}"
    );
}

#[test]
fn start_up_refuses_what_check_refuses_with_the_same_errors() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("main.yaml"), MANY_MAIN).unwrap();
    std::fs::write(dir.path().join("upstreams.yaml"), MANY_UPSTREAMS).unwrap();
    let out = run(&["-c", dir.path().join("main.yaml").to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    for want in MANY_ERRORS {
        assert!(stderr.contains(want), "expected {want:?} in:\n{stderr}");
    }
}

/// Each of these once passed `-t` and then stopped start-up (or, for the access log, started
/// without one). Alone in an otherwise good config, each is refused by both.
#[test]
fn what_start_up_needs_outside_main_yaml_is_checked_one_by_one() {
    let cases = [
        ("proxy_address_tls: 127.0.0.1:18445\nproxy_certificates: no-such-folder\n", "proxy_certificates: "),
        ("user: no-such-user-aralez\n", "user: no user named"),
        ("group: no-such-group-aralez\n", "group: no group named"),
        ("config_tls_address: 127.0.0.1:18446\nconfig_tls_certificate: api.crt\nconfig_tls_key_file: api.key\n", "config_tls_certificate: cannot read"),
        ("access_log: /nonexistent-dir/a.log\n", "access_log: /nonexistent-dir/a.log cannot be opened"),
    ];
    for (extra, want) in cases {
        let main = format!("upstreams_conf: upstreams.yaml\nconfig_address: 127.0.0.1:0\nproxy_address_http: 127.0.0.1:0\n{extra}");
        let (code, stdout, stderr) = check(&main, GOOD);
        assert_eq!(code, 1, "{extra}: {stdout}{stderr}");
        assert!(
            stderr.contains(want),
            "{extra}: expected {want:?} in:\n{stderr}"
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("main.yaml"), &main).unwrap();
        std::fs::write(dir.path().join("upstreams.yaml"), GOOD).unwrap();
        let out = run(&["-c", dir.path().join("main.yaml").to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{extra}: {stderr}");
        assert!(
            stderr.contains(want),
            "{extra}: expected {want:?} in:\n{stderr}"
        );
    }
}
