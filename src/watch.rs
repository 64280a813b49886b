//! Watching a folder for changes, debounced on the trailing edge: a burst of writes ends in
//! one callback after the folder has been quiet for `DEBOUNCE` (or `MAX_DELAY` at most, so a
//! busy folder cannot starve it). The folder is watched, not a file, so that saves that
//! replace files (editor temp file + rename, Kubernetes' symlink swap) are seen too.

use std::future::Future;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use log::error;
use notify::event::{AccessKind, AccessMode};
use notify::{Event, EventKind, RecursiveMode, Watcher};
use pingora::server::ShutdownWatch;
use tokio::sync::mpsc;
use tokio::time::{timeout, Instant};

/// Quiet time after the last event before the callback runs.
pub const DEBOUNCE: Duration = Duration::from_millis(200);
/// Longest the callback waits while events keep coming.
pub const MAX_DELAY: Duration = Duration::from_millis(800);

/// Whether an event can have changed content (reads are ignored, or our own reads would
/// trigger callbacks forever).
fn may_change(event: &Event) -> bool {
    match event.kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

/// Whether an event in its folder can concern `file`: it names the file, or the first part
/// of the file's relative symlink target (Kubernetes swaps a `..data` link beside the file), or
/// it names nothing (the kernel's queue overflowed).
fn concerns(event: &Event, file: &Path) -> bool {
    if event.paths.is_empty() {
        return true;
    }
    let link_head = std::fs::read_link(file).ok().and_then(|target| {
        let head = target.components().next()?;
        matches!(head, Component::Normal(_)).then(|| head.as_os_str().to_owned())
    });
    event.paths.iter().any(|p| {
        let name = p.file_name();
        name == file.file_name() || (name.is_some() && name == link_head.as_deref())
    })
}

/// Calls `on_change` after each burst of changes in `folder`, until shutdown. With `only`,
/// changes to other files of the folder are ignored.
pub async fn watch_folder<F, Fut>(
    folder: &Path,
    only: Option<&Path>,
    mut shutdown: ShutdownWatch,
    mut on_change: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let (tx, mut rx) = mpsc::unbounded_channel();
    let only: Option<PathBuf> = only.map(Path::to_path_buf);
    let watcher = notify::recommended_watcher(move |res: notify::Result<Event>| match res {
        Ok(event) if may_change(&event) && only.as_deref().is_none_or(|f| concerns(&event, f)) => {
            let _ = tx.send(());
        }
        Ok(_) => {}
        Err(e) => error!("file watcher error: {e}"),
    });
    // Kept alive for the life of the loop; dropping it stops the watch.
    let _watcher =
        match watcher.and_then(|mut w| w.watch(folder, RecursiveMode::NonRecursive).map(|_| w)) {
            Ok(w) => w,
            Err(e) => {
                error!(
                    "cannot watch {}: {e}; changes there will not be picked up",
                    folder.display()
                );
                return;
            }
        };
    // Whatever changed between the caller's first load and this watch is only seen by a
    // catch-up call. It is debounced like any burst: a write may be in progress right now.
    let mut catching_up = true;
    loop {
        if !catching_up {
            tokio::select! {
                _ = shutdown.changed() => return,
                event = rx.recv() => if event.is_none() { return },
            }
        }
        catching_up = false;
        let first = Instant::now();
        loop {
            let wait = DEBOUNCE.min(MAX_DELAY.saturating_sub(first.elapsed()));
            match timeout(wait, rx.recv()).await {
                Ok(Some(())) if first.elapsed() < MAX_DELAY => continue,
                Ok(None) => return,
                _ => break,
            }
        }
        on_change().await;
    }
}

/// The folder a file lives in (`.` for a bare file name).
pub fn folder_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{CreateKind, ModifyKind};

    fn event(paths: &[&Path]) -> Event {
        let mut e = Event::new(EventKind::Modify(ModifyKind::Any));
        e.paths = paths.iter().map(|p| p.to_path_buf()).collect();
        e
    }

    #[test]
    fn only_events_about_the_file_or_its_link_concern_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("upstreams.yaml");
        assert!(concerns(&event(&[&file]), &file));
        assert!(concerns(&event(&[&dir.path().join("x.tmp"), &file]), &file));
        assert!(!concerns(&event(&[&dir.path().join("aralez.log")]), &file));
        assert!(
            concerns(&event(&[]), &file),
            "overflow: anything may have changed"
        );
        // Kubernetes: upstreams.yaml -> ..data/upstreams.yaml, and ..data is swapped.
        std::os::unix::fs::symlink("..data/upstreams.yaml", &file).unwrap();
        let mut swap = Event::new(EventKind::Create(CreateKind::Any));
        swap.paths = vec![dir.path().join("..data")];
        assert!(concerns(&swap, &file));
        assert!(!concerns(&event(&[&dir.path().join("..2024")]), &file));
    }
}
