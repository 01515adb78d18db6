//! Filling a new volume from the image (Docker's copy-up): what the box root
//! holds at a volume's target is copied into the empty share before the
//! share is mounted over it: files, directories, symlinks, device nodes,
//! fifos and hard links, with owners, modes and times; then the owner and
//! mode of the image's directory go to the volume's root.
//!
//! Both trees are walked one name at a time relative to directory
//! descriptors, never by path: symlinks are copied as symlinks and never
//! followed (`O_NOFOLLOW`, `AT_SYMLINK_NOFOLLOW`), nothing is created where
//! something already is (`O_EXCL`), and hard links are resolved beneath the
//! share without symlinks. An image's `/data/x -> /` copies a link, not the
//! guest's root. Extended attributes are not copied.

use std::collections::HashMap;
use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat, readlinkat, AtFlags, OFlag};
use nix::sys::stat::{
    fchmod, fchmodat, fstat, fstatat, futimens, mkdirat, mknodat, utimensat, FchmodatFlags,
    FileStat, Mode, SFlag, UtimensatFlags,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchown, fchownat, linkat, symlinkat, Gid, Uid};

use a3s_box_core::guest::message::SEAL_XATTR;

use crate::error::{Context, InitError};
use crate::storage::resolve::open_beneath;

/// Deepest directory nesting copied (each level holds two descriptors).
pub const MAX_DEPTH: usize = 128;

/// Copy the tree of directory `src` into directory `dst` if `dst` is empty;
/// whether it was. `what` names the volume in errors.
pub fn fill(src: &OwnedFd, dst: &OwnedFd, what: &str) -> Result<bool, InitError> {
    if !is_empty(dst.as_raw_fd()).context(|| format!("read the volume at {what}"))? {
        return Ok(false);
    }
    let mut copier = Copier {
        what,
        dst_root: dst.as_raw_fd(),
        links: HashMap::new(),
    };
    copier.dir_contents(src.as_raw_fd(), dst.as_raw_fd(), Path::new(""), 0)?;
    let st = fstat(src.as_raw_fd()).context(|| format!("stat the image's {what}"))?;
    copier.owner_and_mode(dst.as_raw_fd(), &st, Path::new("."))?;
    Ok(true)
}

/// Whether directory `fd` has no entries.
fn is_empty(fd: RawFd) -> std::io::Result<bool> {
    Ok(std::fs::read_dir(format!("/proc/self/fd/{fd}"))?
        .next()
        .is_none())
}

/// The names in directory `fd`.
fn names(fd: RawFd) -> std::io::Result<Vec<std::ffi::OsString>> {
    std::fs::read_dir(format!("/proc/self/fd/{fd}"))?
        .map(|e| e.map(|e| e.file_name()))
        .collect()
}

fn adopt(fd: RawFd) -> OwnedFd {
    // SAFETY: `fd` was just returned by the kernel and nothing else owns it.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

fn spec(mode: u32) -> Mode {
    Mode::from_bits_truncate(mode & 0o7777)
}

struct Copier<'a> {
    what: &'a str,
    dst_root: RawFd,
    /// Files with more than one link: (dev, inode) → the directory (from
    /// the share's root) and name of the first copy.
    links: HashMap<(u64, u64), (PathBuf, CString)>,
}

impl Copier<'_> {
    fn step(&self, op: &str, rel: &Path) -> impl FnOnce() -> String {
        let text = format!(
            "fill the volume at {} from the image: {op} {}",
            self.what,
            rel.display()
        );
        move || text
    }

    fn dir_contents(
        &mut self,
        src: RawFd,
        dst: RawFd,
        rel: &Path,
        depth: usize,
    ) -> Result<(), InitError> {
        if depth > MAX_DEPTH {
            return Err(Errno::ELOOP).context(self.step("nest deeper than 128 in", rel));
        }
        let mut entries = names(src).context(self.step("list", rel))?;
        entries.sort();
        for name in entries {
            let path = rel.join(&name);
            let c_name = CString::new(name.as_bytes()).map_err(|_| InitError::Sys {
                what: self.step("name", &path)(),
                errno: Errno::EINVAL,
            })?;
            self.entry(src, dst, &c_name, &path, depth)?;
        }
        Ok(())
    }

    fn entry(
        &mut self,
        src: RawFd,
        dst: RawFd,
        name: &CString,
        rel: &Path,
        depth: usize,
    ) -> Result<(), InitError> {
        let st = fstatat(Some(src), name.as_c_str(), AtFlags::AT_SYMLINK_NOFOLLOW)
            .context(self.step("stat", rel))?;
        let kind = SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits());
        if kind != SFlag::S_IFDIR && st.st_nlink > 1 {
            let key = (st.st_dev, st.st_ino);
            if let Some(first) = self.links.get(&key) {
                return self.hard_link(first, dst, name, rel);
            }
            self.links.insert(key, (parent_of(rel), name.clone()));
        }
        let nofollow = OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        match kind {
            SFlag::S_IFDIR => {
                mkdirat(Some(dst), name.as_c_str(), Mode::from_bits_truncate(0o700))
                    .context(self.step("create", rel))?;
                let open = |fd, flags| {
                    openat(Some(fd), name.as_c_str(), flags | nofollow, Mode::empty()).map(adopt)
                };
                let from = open(src, OFlag::O_RDONLY | OFlag::O_DIRECTORY)
                    .context(self.step("open", rel))?;
                let to = open(dst, OFlag::O_RDONLY | OFlag::O_DIRECTORY)
                    .context(self.step("open", rel))?;
                self.dir_contents(from.as_raw_fd(), to.as_raw_fd(), rel, depth + 1)?;
                self.owner_and_mode(to.as_raw_fd(), &st, rel)?;
                self.times(to.as_raw_fd(), &st, rel)
            }
            SFlag::S_IFREG => {
                let from = openat(
                    Some(src),
                    name.as_c_str(),
                    OFlag::O_RDONLY | nofollow,
                    Mode::empty(),
                )
                .map(adopt)
                .context(self.step("open", rel))?;
                let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | nofollow;
                let to = openat(
                    Some(dst),
                    name.as_c_str(),
                    flags,
                    Mode::from_bits_truncate(0o600),
                )
                .map(adopt)
                .context(self.step("create", rel))?;
                let (mut from, mut to) = (File::from(from), File::from(to));
                std::io::copy(&mut from, &mut to).context(self.step("copy", rel))?;
                self.owner_and_mode(to.as_raw_fd(), &st, rel)?;
                self.times(to.as_raw_fd(), &st, rel)
            }
            SFlag::S_IFLNK => {
                let target =
                    readlinkat(Some(src), name.as_c_str()).context(self.step("read", rel))?;
                symlinkat(target.as_os_str(), Some(dst), name.as_c_str())
                    .context(self.step("create", rel))?;
                self.link_metadata(dst, name, &st, rel, false)
            }
            _ => {
                mknodat(
                    Some(dst),
                    name.as_c_str(),
                    kind,
                    spec(st.st_mode),
                    st.st_rdev,
                )
                .context(self.step("create", rel))?;
                self.link_metadata(dst, name, &st, rel, true)
            }
        }
    }

    /// Owner, mode (special files) and times of a non-opened entry.
    fn link_metadata(
        &self,
        dst: RawFd,
        name: &CString,
        st: &FileStat,
        rel: &Path,
        with_mode: bool,
    ) -> Result<(), InitError> {
        fchownat(
            Some(dst),
            name.as_c_str(),
            Some(Uid::from_raw(st.st_uid)),
            Some(Gid::from_raw(st.st_gid)),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .context(self.step("chown", rel))?;
        if with_mode {
            // After chown, which clears set-id bits; not a symlink (mknod made it).
            fchmodat(
                Some(dst),
                name.as_c_str(),
                spec(st.st_mode),
                FchmodatFlags::FollowSymlink,
            )
            .context(self.step("chmod", rel))?;
        }
        let (atime, mtime) = times_of(st);
        utimensat(
            Some(dst),
            name.as_c_str(),
            &atime,
            &mtime,
            UtimensatFlags::NoFollowSymlink,
        )
        .context(self.step("set times of", rel))
    }

    fn owner_and_mode(&self, fd: RawFd, st: &FileStat, rel: &Path) -> Result<(), InitError> {
        fchown(
            fd,
            Some(Uid::from_raw(st.st_uid)),
            Some(Gid::from_raw(st.st_gid)),
        )
        .context(self.step("chown", rel))?;
        // After chown, which clears set-id bits.
        fchmod(fd, spec(st.st_mode)).context(self.step("chmod", rel))
    }

    fn times(&self, fd: RawFd, st: &FileStat, rel: &Path) -> Result<(), InitError> {
        let (atime, mtime) = times_of(st);
        futimens(fd, &atime, &mtime).context(self.step("set times of", rel))
    }

    /// Link `name` in `dst` to the copy made at `first` (relative to the
    /// share's root, resolved beneath it without symlinks).
    fn hard_link(
        &self,
        (dir, file): &(PathBuf, CString),
        dst: RawFd,
        name: &CString,
        rel: &Path,
    ) -> Result<(), InitError> {
        let dir = open_beneath(self.dst_root, dir).context(self.step("link", rel))?;
        linkat(
            Some(dir.as_raw_fd()),
            file.as_c_str(),
            Some(dst),
            name.as_c_str(),
            AtFlags::empty(),
        )
        .context(self.step("link", rel))
    }
}

/// The directory of `rel` relative to the share's root (`.` for the root).
fn parent_of(rel: &Path) -> PathBuf {
    match rel.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn times_of(st: &FileStat) -> (TimeSpec, TimeSpec) {
    (
        TimeSpec::new(st.st_atime, st.st_atime_nsec),
        TimeSpec::new(st.st_mtime, st.st_mtime_nsec),
    )
}

/// Seal the share open at `share` (a read-only volume just filled): its
/// daemon refuses every write from now on, whatever the box does later.
/// Then check that it really does, since a daemon that does not know the
/// seal would just store the attribute.
pub fn seal(share: &OwnedFd, what: &str) -> Result<(), InitError> {
    let name = CString::new(SEAL_XATTR).map_err(|_| InitError::Protocol("seal name".into()))?;
    // SAFETY: a valid descriptor, a NUL-terminated name and a 1-byte value.
    let set =
        unsafe { libc::fsetxattr(share.as_raw_fd(), name.as_ptr(), c"1".as_ptr().cast(), 1, 0) };
    Errno::result(set).context(|| format!("seal the read-only volume at {what}"))?;
    const PROBE: &str = ".a3s-box-seal-probe";
    match mkdirat(
        Some(share.as_raw_fd()),
        PROBE,
        Mode::from_bits_truncate(0o700),
    ) {
        Err(Errno::EROFS) => Ok(()),
        Ok(()) => {
            let _ = nix::unistd::unlinkat(
                Some(share.as_raw_fd()),
                PROBE,
                nix::unistd::UnlinkatFlags::RemoveDir,
            );
            Err(InitError::Sys {
                what: format!(
                    "the volume at {what} is still writable after its seal \
                     (its virtio-fs daemon is not a3s-box-fs)"
                ),
                errno: Errno::EROFS,
            })
        }
        Err(errno) => Err(InitError::Sys {
            what: format!("check the seal of the volume at {what}"),
            errno,
        }),
    }
}

#[cfg(test)]
mod tests;
