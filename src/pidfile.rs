//! The PID file in the foreground (Pingora writes it only when it daemonizes): written at
//! start, removed when the process exits cleanly.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

static WRITTEN: OnceLock<(PathBuf, String)> = OnceLock::new();

/// Writes this process's id to `path` and removes the file again at `exit`. With `user`
/// (privileges are dropped to it later), the file is given to that user, as Pingora does
/// when it daemonizes, so that the process can still remove it.
pub fn write(path: &Path, user: Option<&str>) -> std::io::Result<()> {
    let pid = std::process::id().to_string();
    std::fs::write(path, format!("{pid}\n"))?;
    if let Some(name) = user.filter(|_| nix::unistd::Uid::effective().is_root()) {
        if let Ok(Some(user)) = nix::unistd::User::from_name(name) {
            nix::unistd::chown(path, Some(user.uid), Some(user.gid))?;
        }
    }
    if WRITTEN.set((path.to_path_buf(), pid)).is_ok() {
        // SAFETY: registers a plain function with no arguments; it only touches the static.
        unsafe {
            libc::atexit(remove_at_exit);
        }
    }
    Ok(())
}

/// Removes the file unless another process (the successor of an upgrade) wrote it since.
pub fn remove() {
    if let Some((path, pid)) = WRITTEN.get() {
        if std::fs::read_to_string(path).is_ok_and(|text| text.trim() == pid) {
            let _ = std::fs::remove_file(path);
        }
    }
}

extern "C" fn remove_at_exit() {
    remove();
}
