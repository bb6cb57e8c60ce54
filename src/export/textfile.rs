//! The textfile side of `sockwatch export --textfile`: a file for
//! node_exporter's textfile collector, replaced whole at every change.
//!
//! node_exporter reads every `*.prom` file of its directory at each scrape,
//! so a file written in place could be read half written. Each version is
//! written to a temporary file in the same directory (a hidden name that
//! does not end in `.prom`, so the collector never reads it), flushed to
//! disk, and renamed over the file: a reader sees the old version or the
//! new one, whole. Writing happens on a thread of its own, because a write
//! to a slow or full disk must not hold up the watcher's loop nor its
//! response to SIGTERM; when versions come faster than the disk takes
//! them, only the newest is written.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread;
use std::time::Duration;

use anyhow::Context;

use crate::exit::UsageError;

/// The file, and the temporary file its versions are written to first.
#[derive(Debug, Clone)]
pub struct Textfile {
    path: PathBuf,
    temp: PathBuf,
}

impl Textfile {
    /// The textfile at `path`, which must name a `*.prom` file (the only
    /// ones the collector reads) in a directory that exists.
    pub fn new(path: &Path) -> anyhow::Result<Textfile> {
        let usage = |why: &str| UsageError(format!("--textfile {}: {why}", path.display()));
        let Some(name) = path.file_name() else {
            return Err(usage("not a file name").into());
        };
        if !name.as_encoded_bytes().ends_with(b".prom") || name.len() == ".prom".len() {
            return Err(usage(
                "the name must end in .prom, as node_exporter's textfile collector reads \
                 only those",
            )
            .into());
        }
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        let metadata = fs::metadata(dir)
            .with_context(|| format!("--textfile: cannot use directory {}", dir.display()))?;
        if !metadata.is_dir() {
            anyhow::bail!("--textfile: {} is not a directory", dir.display());
        }
        if fs::metadata(path).is_ok_and(|m| m.is_dir()) {
            return Err(usage("is a directory").into());
        }
        let mut temp = OsString::from(".");
        temp.push(name);
        temp.push(format!(".{}.tmp", std::process::id()));
        Ok(Textfile {
            path: path.to_owned(),
            temp: dir.join(temp),
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Checks now that the directory takes new files, so that a mistake
    /// shows at start rather than at the first change.
    pub fn check(&self) -> anyhow::Result<()> {
        let result = self.create_temp().map(drop);
        let _ = fs::remove_file(&self.temp);
        result.with_context(|| {
            format!(
                "--textfile: cannot write in the directory of {}",
                self.path.display()
            )
        })
    }

    fn create_temp(&self) -> io::Result<File> {
        // A temporary file left by a process of the same pid is stale.
        let _ = fs::remove_file(&self.temp);
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&self.temp)
    }

    /// Replaces the file with `text`, atomically: the temporary file is
    /// written and flushed to disk, then renamed over the file, and the
    /// directory is flushed so that the rename outlives a crash.
    pub fn write(&self, text: &str) -> io::Result<()> {
        let result = self.create_temp().and_then(|mut file| {
            file.write_all(text.as_bytes())?;
            file.sync_all()?;
            fs::rename(&self.temp, &self.path)
        });
        if result.is_err() {
            let _ = fs::remove_file(&self.temp);
            return result;
        }
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            // Some file systems cannot flush a directory; the file is whole
            // all the same.
            let _ = File::open(dir).and_then(|d| d.sync_all());
        }
        Ok(())
    }

    /// Removes the file (and any temporary file): a stopped exporter
    /// claims nothing about what listens.
    pub fn remove(&self) {
        let _ = fs::remove_file(&self.temp);
        let _ = fs::remove_file(&self.path);
    }
}

/// The newest version not yet written, and whether to stop.
#[derive(Default)]
struct Pending {
    text: Option<String>,
    stop: bool,
}

/// A thread that writes the versions it is given to a [`Textfile`].
pub struct Writer {
    pending: Arc<(Mutex<Pending>, Condvar)>,
    finished: mpsc::Receiver<()>,
    textfile: Textfile,
}

impl Writer {
    /// Starts the thread. Failures are said on stderr, once until a write
    /// succeeds again; the next version is tried all the same.
    pub fn start(textfile: Textfile) -> io::Result<Writer> {
        let pending = Arc::new((Mutex::new(Pending::default()), Condvar::new()));
        let (done, finished) = mpsc::channel();
        let shared = Arc::clone(&pending);
        let file = textfile.clone();
        thread::Builder::new()
            .name("export-textfile".into())
            .spawn(move || {
                write_versions(&file, &shared);
                let _ = done.send(());
            })?;
        Ok(Writer {
            pending,
            finished,
            textfile,
        })
    }

    /// Hands over a new version; one not yet written is replaced.
    pub fn submit(&self, text: String) {
        let (lock, wake) = &*self.pending;
        lock.lock().unwrap_or_else(PoisonError::into_inner).text = Some(text);
        wake.notify_one();
    }

    /// Stops the thread and removes the file. A write that is stuck (a
    /// hung file system) is waited for at most `grace`; the file is then
    /// left as it is, since removing it under a write could not be sure.
    pub fn stop(self, grace: Duration) {
        let (lock, wake) = &*self.pending;
        lock.lock().unwrap_or_else(PoisonError::into_inner).stop = true;
        wake.notify_one();
        match self.finished.recv_timeout(grace) {
            Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => self.textfile.remove(),
            Err(mpsc::RecvTimeoutError::Timeout) => eprintln!(
                "sockwatch: a write of {} did not finish; leaving the file",
                self.textfile.path().display()
            ),
        }
    }
}

fn write_versions(textfile: &Textfile, pending: &(Mutex<Pending>, Condvar)) {
    let (lock, wake) = pending;
    let mut failing = false;
    loop {
        let text = {
            let mut state = lock.lock().unwrap_or_else(PoisonError::into_inner);
            loop {
                if state.stop {
                    return;
                }
                if let Some(text) = state.text.take() {
                    break text;
                }
                state = wake.wait(state).unwrap_or_else(PoisonError::into_inner);
            }
        };
        match textfile.write(&text) {
            Ok(()) => failing = false,
            Err(e) if !failing => {
                failing = true;
                eprintln!(
                    "sockwatch: failed to write {}: {e}; trying again at the next change",
                    textfile.path().display()
                );
            }
            Err(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("sockwatch-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn names_and_directories_are_checked() {
        let dir = scratch("textfile-names");
        let usage = |path: &Path| {
            let error = Textfile::new(path).unwrap_err();
            assert!(error.downcast_ref::<UsageError>().is_some(), "{error:#}");
            format!("{error:#}")
        };
        assert!(usage(&dir.join("sockwatch.txt")).contains("must end in .prom"));
        assert!(usage(&dir.join(".prom")).contains("must end in .prom"));
        fs::create_dir(dir.join("d.prom")).unwrap();
        assert!(usage(&dir.join("d.prom")).contains("is a directory"));
        let missing = Textfile::new(&dir.join("absent/s.prom")).unwrap_err();
        assert!(missing.downcast_ref::<UsageError>().is_none());
        assert!(
            format!("{missing:#}").contains("cannot use directory"),
            "{missing:#}"
        );
        let textfile = Textfile::new(&dir.join("s.prom")).unwrap();
        textfile.check().unwrap();
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn versions_replace_the_file_whole_and_stop_removes_it() {
        let dir = scratch("textfile-versions");
        let path = dir.join("sockwatch.prom");
        let writer = Writer::start(Textfile::new(&path).unwrap()).unwrap();
        writer.submit("a 1\n".into());
        writer.submit("a 2\n".into());
        let until = std::time::Instant::now() + Duration::from_secs(10);
        while fs::read_to_string(&path).ok().as_deref() != Some("a 2\n") {
            assert!(
                std::time::Instant::now() < until,
                "the last version is written"
            );
            thread::sleep(Duration::from_millis(5));
        }
        let names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["sockwatch.prom"], "no temporary file left");
        writer.stop(Duration::from_secs(5));
        assert!(
            fs::read_dir(&dir).unwrap().next().is_none(),
            "removed at stop"
        );
        let _ = fs::remove_dir_all(&dir);
    }
}
