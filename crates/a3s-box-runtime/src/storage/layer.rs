//! A box's writable layer: a sparse raw ext4 image in the box directory,
//! attached to its VM as a second virtio-blk disk, which guest-init mounts as
//! the overlay's upper layer. Nothing of the image is copied.
//!
//! Formatting is done once per size: a template is made with `mkfs.ext4`
//! (without reserved GDT blocks, `sparse_super2`, lazily initialised inode
//! tables and journal, so ~160 KiB of a 10 GiB file is allocated) and cached;
//! each box gets a reflink of it where the host filesystem has them, else a
//! copy of its data extents only. The host writes these images but never
//! mounts them.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::StorageError;

/// The writable layer's file in a box directory.
pub const LAYER_FILE: &str = "rw.img";
/// Size of a writable layer without `--storage-opt size=`.
pub const DEFAULT_LAYER_BYTES: u64 = 10 << 30;
/// Filesystem of the writable layer (what the guest mounts it as).
pub const LAYER_FSTYPE: &str = "ext4";
/// Bumped when the template's mkfs options change.
const TEMPLATE_VERSION: u32 = 1;
/// `FICLONE` from linux/fs.h: `_IOW(0x94, 9, int)`.
const FICLONE: libc::c_ulong = 0x4004_9409;

/// The writable layer of the box in `box_dir`, if it has one.
pub fn layer_of(box_dir: &Path) -> Option<PathBuf> {
    let path = box_dir.join(LAYER_FILE);
    path.is_file().then_some(path)
}

/// Make the writable layer of `size_bytes` in `box_dir` (templates cached in
/// `cache_dir`). Returns its path.
pub fn create(cache_dir: &Path, box_dir: &Path, size_bytes: u64) -> Result<PathBuf, StorageError> {
    let template = template(cache_dir, size_bytes)?;
    let dest = box_dir.join(LAYER_FILE);
    let tmp = box_dir.join(format!(".{LAYER_FILE}.tmp"));
    copy_sparse(&template, &tmp).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })?;
    std::fs::rename(&tmp, &dest).map_err(StorageError::io("store", &dest))?;
    Ok(dest)
}

/// The formatted template of `size_bytes`, made on first use.
fn template(cache_dir: &Path, size_bytes: u64) -> Result<PathBuf, StorageError> {
    let path = cache_dir.join(format!("ext4-v{TEMPLATE_VERSION}-{size_bytes}.img"));
    if path.is_file() {
        return Ok(path);
    }
    std::fs::create_dir_all(cache_dir).map_err(StorageError::io("create", cache_dir))?;
    let tmp = cache_dir.join(format!(".{}.{}.tmp", size_bytes, std::process::id()));
    let file = File::create(&tmp).map_err(StorageError::io("create", &tmp))?;
    file.set_len(size_bytes)
        .map_err(StorageError::io("size", &tmp))?;
    drop(file);
    let output = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-b", "4096", "-m", "0", "-L", "a3s-rw"])
        .args(["-O", "^resize_inode,sparse_super2"])
        .args([
            "-E",
            "lazy_itable_init=1,lazy_journal_init=1,nodiscard,root_owner=0:0",
        ])
        .arg(&tmp)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            match e.kind() {
                std::io::ErrorKind::NotFound => StorageError::MissingTool {
                    tool: "mkfs.ext4".into(),
                    package: "e2fsprogs",
                },
                _ => StorageError::io("run", "mkfs.ext4")(e),
            }
        })?;
    if !output.status.success() {
        let _ = std::fs::remove_file(&tmp);
        return Err(StorageError::Tool {
            tool: "mkfs.ext4",
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    std::fs::rename(&tmp, &path).map_err(StorageError::io("store", &path))?;
    Ok(path)
}

/// Copy `src` to `dst` keeping holes: a reflink when the filesystem can,
/// else only the data extents (`SEEK_DATA`/`SEEK_HOLE`).
fn copy_sparse(src: &Path, dst: &Path) -> Result<(), StorageError> {
    let mut from = File::open(src).map_err(StorageError::io("open", src))?;
    let mut to = File::create(dst).map_err(StorageError::io("create", dst))?;
    // SAFETY: FICLONE takes the source descriptor as its argument; both
    // descriptors are open for the duration of the call.
    if unsafe { libc::ioctl(to.as_raw_fd(), FICLONE, from.as_raw_fd()) } == 0 {
        return Ok(());
    }
    let len = from
        .metadata()
        .map_err(StorageError::io("stat", src))?
        .len();
    to.set_len(len).map_err(StorageError::io("size", dst))?;
    let mut offset: i64 = 0;
    let io_err = |op| StorageError::io(op, dst);
    while (offset as u64) < len {
        // SAFETY: lseek on an open descriptor.
        let data = unsafe { libc::lseek(from.as_raw_fd(), offset, libc::SEEK_DATA) };
        if data < 0 {
            break; // ENXIO: no data after `offset`
        }
        // SAFETY: as above.
        let hole = unsafe { libc::lseek(from.as_raw_fd(), data, libc::SEEK_HOLE) };
        let end = if hole < 0 { len as i64 } else { hole };
        from.seek(SeekFrom::Start(data as u64))
            .map_err(StorageError::io("seek", src))?;
        to.seek(SeekFrom::Start(data as u64))
            .map_err(io_err("seek"))?;
        let mut chunk = (&mut from).take((end - data) as u64);
        std::io::copy(&mut chunk, &mut to).map_err(io_err("write"))?;
        offset = end;
    }
    to.flush().map_err(io_err("write"))?;
    Ok(())
}

/// Bytes a file really occupies on the host disk.
pub fn allocated_bytes(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path)
        .map(|m| m.blocks() * 512)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_are_sparse_copies_of_a_cached_template() {
        let cache = tempfile::tempdir().unwrap();
        let boxes = tempfile::tempdir().unwrap();
        let size = 64 << 20;
        let mut total = 0;
        for i in 0..3 {
            let dir = boxes.path().join(format!("b{i}"));
            std::fs::create_dir(&dir).unwrap();
            let layer = create(cache.path(), &dir, size).unwrap();
            assert_eq!(layer_of(&dir), Some(layer.clone()));
            assert_eq!(std::fs::metadata(&layer).unwrap().len(), size);
            total += allocated_bytes(&layer);
        }
        assert!(total < 3 << 20, "3 layers allocate {total} bytes");
        let templates = std::fs::read_dir(cache.path()).unwrap().count();
        assert_eq!(templates, 1, "one template per size, no leftovers");
        let a = std::fs::read(boxes.path().join("b0").join(LAYER_FILE)).unwrap();
        let t = std::fs::read(template(cache.path(), size).unwrap()).unwrap();
        assert!(a == t, "the copy has the template's bytes");
        assert_eq!(layer_of(boxes.path()), None);
    }
}
