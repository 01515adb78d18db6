//! What the daemon serves, prepared in its own mount namespace before it
//! enters the sandbox (which then pivots into the shared directory):
//!
//! - a read-only share is a read-only bind mount of the directory onto
//!   itself, so even a daemon bug cannot write it (non-recursive: mounts
//!   below the directory are not served);
//! - a single-file share is a small tmpfs mounted on the (empty) shared
//!   directory, holding one entry, [`SHARED_FILE_NAME`], on which the host
//!   file is bind-mounted. The tmpfs itself is read-only, so the guest can
//!   neither reach the file's siblings nor create anything next to it.
//!
//! None of this is visible outside the daemon.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use a3s_box_core::guest::message::SHARED_FILE_NAME;
use nix::mount::{mount, MsFlags};
use nix::sched::{unshare, CloneFlags};

/// Why the view could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    /// A mount-namespace or mount call failed.
    #[error("{what}: {errno}")]
    Sys {
        /// What was attempted.
        what: String,
        /// The error.
        errno: nix::errno::Errno,
    },
    /// A file could not be inspected or created.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// `--file` names something other than a regular file.
    #[error("{0}: not a regular file (only files can be shared with --file)")]
    NotAFile(PathBuf),
}

/// Prepare the shared directory `dir` (see the module docs).
pub fn prepare(dir: &Path, file: Option<&Path>, read_only: bool) -> Result<(), ViewError> {
    if file.is_none() && !read_only {
        return Ok(());
    }
    let sys = |what: String| move |errno| ViewError::Sys { what, errno };
    unshare(CloneFlags::CLONE_NEWNS).map_err(sys("new mount namespace".into()))?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(sys("make mounts private".into()))?;
    match file {
        Some(file) => one_file(dir, file, read_only),
        None => {
            bind(dir, dir)?;
            remount_read_only(dir, true)
        }
    }
}

fn one_file(dir: &Path, file: &Path, read_only: bool) -> Result<(), ViewError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ViewError::Io { path, source }
    };
    if !std::fs::metadata(file).map_err(io(file))?.is_file() {
        return Err(ViewError::NotAFile(file.to_path_buf()));
    }
    mount(
        Some("a3s-box-fs"),
        dir,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("mode=0755,size=16k,nr_inodes=8"),
    )
    .map_err(|errno| ViewError::Sys {
        what: format!("mount a tmpfs on {}", dir.display()),
        errno,
    })?;
    let target = dir.join(SHARED_FILE_NAME);
    let _: File = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&target)
        .map_err(io(&target))?;
    bind(file, &target)?;
    if read_only {
        remount_read_only(&target, true)?;
    }
    remount_read_only(dir, false)
}

fn bind(source: &Path, target: &Path) -> Result<(), ViewError> {
    mount(
        Some(source),
        target,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|errno| ViewError::Sys {
        what: format!("bind {} on {}", source.display(), target.display()),
        errno,
    })
}

/// Make the mount at `path` read-only: a bind mount's own flag, or the
/// whole superblock (`bind == false`, for our tmpfs).
fn remount_read_only(path: &Path, bind: bool) -> Result<(), ViewError> {
    let mut flags = MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
    if bind {
        flags |= MsFlags::MS_BIND;
    } else {
        flags |= MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    }
    mount(None::<&str>, path, None::<&str>, flags, None::<&str>).map_err(|errno| ViewError::Sys {
        what: format!("make {} read-only", path.display()),
        errno,
    })
}
