//! The filesystem a3s-box-fs serves: the passthrough filesystem with two
//! changes.
//!
//! **Files skip `FLUSH` on close.** Without a writeback cache every guest
//! `write` already reached the host file before `close` returns, and the
//! daemon keeps no POSIX locks of the guest (they stay guest-local), so the
//! `FLUSH` the kernel sends on every `close(2)` of a shared file only costs a
//! round trip. Under TCG a round trip is the price of a small-file operation:
//! busybox's `echo x > f` closes its file twice (the redirection's `dup2` and
//! the restore), and with `FOPEN_NOFLUSH` on every open and create those two
//! synchronous requests go away. Data reaches the host file at `write`, as
//! before; `fsync` still syncs it; the open file is closed at `RELEASE`.
//!
//! **A share can be sealed** ([`Seal`]): every operation that could change
//! it is refused from then on.
//!
//! Everything else is passed through unchanged. Every method of the trait is
//! forwarded explicitly: a method left out would silently answer `ENOSYS`.

use std::ffi::CStr;
use std::fs::File;
use std::io;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use virtiofsd::filesystem::{
    Context, Entry, Extensions, FileSystem, FsOptions, GetxattrReply, ListxattrReply, OpenOptions,
    SerializableFileSystem, SetattrValid, SetxattrFlags, ZeroCopyReader, ZeroCopyWriter,
};
use virtiofsd::fuse;

use crate::seal::Seal;

/// `F`, with `FOPEN_NOFLUSH` added to every file it opens or creates, and
/// read-only once sealed (if it can be).
#[derive(Debug)]
pub struct Share<F> {
    fs: F,
    seal: Option<Seal>,
}

impl<F> Share<F> {
    /// Serve `fs`; `sealable`: it turns read-only on the guest's seal request.
    pub fn new(fs: F, sealable: bool) -> Self {
        Share {
            fs,
            seal: sealable.then(Seal::default),
        }
    }

    /// `EROFS` if the share is sealed.
    fn writable(&self) -> io::Result<()> {
        self.seal.as_ref().map_or(Ok(()), Seal::writable)
    }

    /// Whether an open with `flags` may go on.
    fn check_open(&self, flags: u32) -> io::Result<()> {
        self.seal.as_ref().map_or(Ok(()), |s| s.open(flags))
    }
}

impl<F: FileSystem> FileSystem for Share<F> {
    type Inode = F::Inode;
    type Handle = F::Handle;
    type DirIter = F::DirIter;

    fn init(&self, capable: FsOptions) -> io::Result<FsOptions> {
        self.fs.init(capable)
    }

    fn destroy(&self) {
        self.fs.destroy()
    }

    fn lookup(&self, ctx: Context, parent: F::Inode, name: &CStr) -> io::Result<Entry> {
        self.fs.lookup(ctx, parent, name)
    }

    fn forget(&self, ctx: Context, inode: F::Inode, count: u64) {
        self.fs.forget(ctx, inode, count)
    }

    fn batch_forget(&self, ctx: Context, requests: Vec<(F::Inode, u64)>) {
        self.fs.batch_forget(ctx, requests)
    }

    fn getattr(
        &self,
        ctx: Context,
        inode: F::Inode,
        handle: Option<F::Handle>,
    ) -> io::Result<(fuse::Attr, Duration)> {
        self.fs.getattr(ctx, inode, handle)
    }

    fn setattr(
        &self,
        ctx: Context,
        inode: F::Inode,
        attr: fuse::SetattrIn,
        handle: Option<F::Handle>,
        valid: SetattrValid,
    ) -> io::Result<(fuse::Attr, Duration)> {
        self.writable()?;
        self.fs.setattr(ctx, inode, attr, handle, valid)
    }

    fn readlink(&self, ctx: Context, inode: F::Inode) -> io::Result<Vec<u8>> {
        self.fs.readlink(ctx, inode)
    }

    fn symlink(
        &self,
        ctx: Context,
        linkname: &CStr,
        parent: F::Inode,
        name: &CStr,
        extensions: Extensions,
    ) -> io::Result<Entry> {
        self.writable()?;
        self.fs.symlink(ctx, linkname, parent, name, extensions)
    }

    #[allow(clippy::too_many_arguments)]
    fn mknod(
        &self,
        ctx: Context,
        inode: F::Inode,
        name: &CStr,
        mode: u32,
        rdev: u32,
        umask: u32,
        extensions: Extensions,
    ) -> io::Result<Entry> {
        self.writable()?;
        self.fs
            .mknod(ctx, inode, name, mode, rdev, umask, extensions)
    }

    fn mkdir(
        &self,
        ctx: Context,
        parent: F::Inode,
        name: &CStr,
        mode: u32,
        umask: u32,
        extensions: Extensions,
    ) -> io::Result<Entry> {
        self.writable()?;
        self.fs.mkdir(ctx, parent, name, mode, umask, extensions)
    }

    fn unlink(&self, ctx: Context, parent: F::Inode, name: &CStr) -> io::Result<()> {
        self.writable()?;
        self.fs.unlink(ctx, parent, name)
    }

    fn rmdir(&self, ctx: Context, parent: F::Inode, name: &CStr) -> io::Result<()> {
        self.writable()?;
        self.fs.rmdir(ctx, parent, name)
    }

    fn rename(
        &self,
        ctx: Context,
        olddir: F::Inode,
        oldname: &CStr,
        newdir: F::Inode,
        newname: &CStr,
        flags: u32,
    ) -> io::Result<()> {
        self.writable()?;
        self.fs.rename(ctx, olddir, oldname, newdir, newname, flags)
    }

    fn link(
        &self,
        ctx: Context,
        inode: F::Inode,
        newparent: F::Inode,
        newname: &CStr,
    ) -> io::Result<Entry> {
        self.writable()?;
        self.fs.link(ctx, inode, newparent, newname)
    }

    fn open(
        &self,
        ctx: Context,
        inode: F::Inode,
        kill_priv: bool,
        flags: u32,
    ) -> io::Result<(Option<F::Handle>, OpenOptions)> {
        self.check_open(flags)?;
        let (handle, options) = self.fs.open(ctx, inode, kill_priv, flags)?;
        Ok((handle, options | OpenOptions::NOFLUSH))
    }

    #[allow(clippy::too_many_arguments)]
    fn create(
        &self,
        ctx: Context,
        parent: F::Inode,
        name: &CStr,
        mode: u32,
        kill_priv: bool,
        flags: u32,
        umask: u32,
        extensions: Extensions,
    ) -> io::Result<(Entry, Option<F::Handle>, OpenOptions)> {
        self.writable()?;
        let (entry, handle, options) = self
            .fs
            .create(ctx, parent, name, mode, kill_priv, flags, umask, extensions)?;
        Ok((entry, handle, options | OpenOptions::NOFLUSH))
    }

    #[allow(clippy::too_many_arguments)]
    fn read<W: ZeroCopyWriter>(
        &self,
        ctx: Context,
        inode: F::Inode,
        handle: F::Handle,
        w: W,
        size: u32,
        offset: u64,
        lock_owner: Option<u64>,
        flags: u32,
    ) -> io::Result<usize> {
        self.fs
            .read(ctx, inode, handle, w, size, offset, lock_owner, flags)
    }

    #[allow(clippy::too_many_arguments)]
    fn write<R: ZeroCopyReader>(
        &self,
        ctx: Context,
        inode: F::Inode,
        handle: F::Handle,
        r: R,
        size: u32,
        offset: u64,
        lock_owner: Option<u64>,
        delayed_write: bool,
        kill_priv: bool,
        flags: u32,
    ) -> io::Result<usize> {
        self.writable()?;
        self.fs.write(
            ctx,
            inode,
            handle,
            r,
            size,
            offset,
            lock_owner,
            delayed_write,
            kill_priv,
            flags,
        )
    }

    fn flush(
        &self,
        ctx: Context,
        inode: F::Inode,
        handle: F::Handle,
        lock_owner: u64,
    ) -> io::Result<()> {
        // Still answered for a file opened before this daemon (migration)
        // or by a kernel that ignores FOPEN_NOFLUSH.
        self.fs.flush(ctx, inode, handle, lock_owner)
    }

    fn fsync(
        &self,
        ctx: Context,
        inode: F::Inode,
        datasync: bool,
        handle: F::Handle,
    ) -> io::Result<()> {
        self.fs.fsync(ctx, inode, datasync, handle)
    }

    fn fallocate(
        &self,
        ctx: Context,
        inode: F::Inode,
        handle: F::Handle,
        mode: u32,
        offset: u64,
        length: u64,
    ) -> io::Result<()> {
        self.writable()?;
        self.fs.fallocate(ctx, inode, handle, mode, offset, length)
    }

    #[allow(clippy::too_many_arguments)]
    fn release(
        &self,
        ctx: Context,
        inode: F::Inode,
        flags: u32,
        handle: F::Handle,
        flush: bool,
        flock_release: bool,
        lock_owner: Option<u64>,
    ) -> io::Result<()> {
        self.fs
            .release(ctx, inode, flags, handle, flush, flock_release, lock_owner)
    }

    fn statfs(&self, ctx: Context, inode: F::Inode) -> io::Result<libc::statvfs64> {
        self.fs.statfs(ctx, inode)
    }

    fn setxattr(
        &self,
        ctx: Context,
        inode: F::Inode,
        name: &CStr,
        value: &[u8],
        flags: u32,
        extra_flags: SetxattrFlags,
    ) -> io::Result<()> {
        if let Some(seal) = &self.seal {
            if seal.request(name) {
                return Ok(());
            }
        }
        self.writable()?;
        self.fs
            .setxattr(ctx, inode, name, value, flags, extra_flags)
    }

    fn getxattr(
        &self,
        ctx: Context,
        inode: F::Inode,
        name: &CStr,
        size: u32,
    ) -> io::Result<GetxattrReply> {
        self.fs.getxattr(ctx, inode, name, size)
    }

    fn listxattr(&self, ctx: Context, inode: F::Inode, size: u32) -> io::Result<ListxattrReply> {
        self.fs.listxattr(ctx, inode, size)
    }

    fn removexattr(&self, ctx: Context, inode: F::Inode, name: &CStr) -> io::Result<()> {
        self.writable()?;
        self.fs.removexattr(ctx, inode, name)
    }

    fn opendir(
        &self,
        ctx: Context,
        inode: F::Inode,
        flags: u32,
    ) -> io::Result<(Option<F::Handle>, OpenOptions)> {
        self.check_open(flags)?;
        self.fs.opendir(ctx, inode, flags)
    }

    fn readdir(
        &self,
        ctx: Context,
        inode: F::Inode,
        handle: F::Handle,
        size: u32,
        offset: u64,
    ) -> io::Result<F::DirIter> {
        self.fs.readdir(ctx, inode, handle, size, offset)
    }

    fn fsyncdir(
        &self,
        ctx: Context,
        inode: F::Inode,
        datasync: bool,
        handle: F::Handle,
    ) -> io::Result<()> {
        self.fs.fsyncdir(ctx, inode, datasync, handle)
    }

    fn releasedir(
        &self,
        ctx: Context,
        inode: F::Inode,
        flags: u32,
        handle: F::Handle,
    ) -> io::Result<()> {
        self.fs.releasedir(ctx, inode, flags, handle)
    }

    fn access(&self, ctx: Context, inode: F::Inode, mask: u32) -> io::Result<()> {
        if let Some(seal) = &self.seal {
            seal.access(mask)?;
        }
        self.fs.access(ctx, inode, mask)
    }

    fn lseek(
        &self,
        ctx: Context,
        inode: F::Inode,
        handle: F::Handle,
        offset: u64,
        whence: u32,
    ) -> io::Result<u64> {
        self.fs.lseek(ctx, inode, handle, offset, whence)
    }

    #[allow(clippy::too_many_arguments)]
    fn copyfilerange(
        &self,
        ctx: Context,
        inode_in: F::Inode,
        handle_in: F::Handle,
        offset_in: u64,
        inode_out: F::Inode,
        handle_out: F::Handle,
        offset_out: u64,
        len: u64,
        flags: u64,
    ) -> io::Result<usize> {
        self.writable()?;
        self.fs.copyfilerange(
            ctx, inode_in, handle_in, offset_in, inode_out, handle_out, offset_out, len, flags,
        )
    }

    fn syncfs(&self, ctx: Context, inode: F::Inode) -> io::Result<()> {
        self.fs.syncfs(ctx, inode)
    }

    fn getlk(&self) -> io::Result<()> {
        self.fs.getlk()
    }

    fn setlk(&self) -> io::Result<()> {
        self.fs.setlk()
    }

    fn setlkw(&self) -> io::Result<()> {
        self.fs.setlkw()
    }

    fn ioctl(&self) -> io::Result<()> {
        self.fs.ioctl()
    }

    fn bmap(&self) -> io::Result<()> {
        self.fs.bmap()
    }

    fn poll(&self) -> io::Result<()> {
        self.fs.poll()
    }

    fn notify_reply(&self) -> io::Result<()> {
        self.fs.notify_reply()
    }

    fn tmpfile(&self) -> io::Result<(Entry, Option<F::Handle>, OpenOptions)> {
        self.writable()?;
        let (entry, handle, options) = self.fs.tmpfile()?;
        Ok((entry, handle, options | OpenOptions::NOFLUSH))
    }
}

impl<F: SerializableFileSystem> SerializableFileSystem for Share<F> {
    fn prepare_serialization(&self, cancel: Arc<AtomicBool>) {
        self.fs.prepare_serialization(cancel)
    }

    fn serialize(&self, state_pipe: File) -> io::Result<()> {
        self.fs.serialize(state_pipe)
    }

    fn deserialize_and_apply(&self, state_pipe: File) -> io::Result<()> {
        self.fs.deserialize_and_apply(state_pipe)
    }
}
