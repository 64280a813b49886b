//! In the foreground (no daemon), `pid_file` and `error_log` are honoured as when daemonized:
//! the PID file exists while the process runs and is removed at a clean exit, and the log
//! lines go to the error log file.

use crate::common;

use std::time::Duration;

use common::*;

#[tokio::test(flavor = "multi_thread")]
async fn pid_file_and_error_log_are_honoured_in_the_foreground() {
    let b = TestBackend::start("b").await;
    let options = ProxyOptions {
        main_extra: "error_log: error.log\n".into(),
        ..Default::default()
    };
    let mut proxy = Proxy::start_with(&single_route("fg.example.com", &[&b]), options).await;
    let pid_file = proxy.dir.path().join("aralez.pid");
    let written = std::fs::read_to_string(&pid_file).expect("the pid file is written");
    assert_eq!(written.trim(), proxy.pid().to_string());

    let error_log = proxy.dir.path().join("error.log");
    let c = client();
    assert_eq!(
        backend_of(&c, &proxy, "fg.example.com", "/")
            .await
            .as_deref(),
        Some("b")
    );
    wait_for(Duration::from_secs(5), "log lines in error_log", || {
        let text = std::fs::read_to_string(&error_log).unwrap_or_default();
        async move { text.contains("proxy listening on http://").then_some(()) }
    })
    .await;

    // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
    assert_eq!(
        unsafe { libc::kill(proxy.pid() as libc::pid_t, libc::SIGTERM) },
        0
    );
    let status = wait_for(Duration::from_secs(10), "aralez to exit", || {
        let status = proxy.child().try_wait().unwrap();
        async move { status }
    })
    .await;
    assert!(status.success(), "{status:?}");
    assert!(
        !pid_file.exists(),
        "the pid file is removed at a clean exit"
    );
    let text = std::fs::read_to_string(&error_log).unwrap();
    assert!(text.contains("SIGTERM"), "{text}");
}
