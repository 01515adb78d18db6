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
//! forwarded explicitly (most through `forward!`): a method left out would
//! silently answer `ENOSYS`.

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

/// Methods that go straight to `self.fs`; `[guarded]` ones first check that
/// the share is not sealed.
macro_rules! forward {
    ($( $([$guard:ident])? fn $name:ident(&self $(, $arg:ident: $ty:ty)*) $(-> $ret:ty)?; )*) => {
        $(
            #[allow(clippy::too_many_arguments)]
            fn $name(&self $(, $arg: $ty)*) $(-> $ret)? {
                $(forward!(@$guard self);)?
                self.fs.$name($($arg),*)
            }
        )*
    };
    (@guarded $self:ident) => {
        $self.writable()?
    };
}

impl<F: FileSystem> FileSystem for Share<F> {
    type Inode = F::Inode;
    type Handle = F::Handle;
    type DirIter = F::DirIter;

    forward! {
        fn init(&self, capable: FsOptions) -> io::Result<FsOptions>;
        fn destroy(&self);
        fn lookup(&self, ctx: Context, parent: F::Inode, name: &CStr) -> io::Result<Entry>;
        fn forget(&self, ctx: Context, inode: F::Inode, count: u64);
        fn batch_forget(&self, ctx: Context, requests: Vec<(F::Inode, u64)>);
        fn getattr(&self, ctx: Context, inode: F::Inode, handle: Option<F::Handle>)
            -> io::Result<(fuse::Attr, Duration)>;
        fn readlink(&self, ctx: Context, inode: F::Inode) -> io::Result<Vec<u8>>;
        // Still answered for a file opened before this daemon (migration)
        // or by a kernel that ignores FOPEN_NOFLUSH.
        fn flush(&self, ctx: Context, inode: F::Inode, handle: F::Handle, lock_owner: u64)
            -> io::Result<()>;
        fn fsync(&self, ctx: Context, inode: F::Inode, datasync: bool, handle: F::Handle)
            -> io::Result<()>;
        fn release(&self, ctx: Context, inode: F::Inode, flags: u32, handle: F::Handle,
            flush: bool, flock_release: bool, lock_owner: Option<u64>) -> io::Result<()>;
        fn statfs(&self, ctx: Context, inode: F::Inode) -> io::Result<libc::statvfs64>;
        fn getxattr(&self, ctx: Context, inode: F::Inode, name: &CStr, size: u32)
            -> io::Result<GetxattrReply>;
        fn listxattr(&self, ctx: Context, inode: F::Inode, size: u32)
            -> io::Result<ListxattrReply>;
        fn readdir(&self, ctx: Context, inode: F::Inode, handle: F::Handle, size: u32,
            offset: u64) -> io::Result<F::DirIter>;
        fn fsyncdir(&self, ctx: Context, inode: F::Inode, datasync: bool, handle: F::Handle)
            -> io::Result<()>;
        fn releasedir(&self, ctx: Context, inode: F::Inode, flags: u32, handle: F::Handle)
            -> io::Result<()>;
        fn lseek(&self, ctx: Context, inode: F::Inode, handle: F::Handle, offset: u64,
            whence: u32) -> io::Result<u64>;
        fn syncfs(&self, ctx: Context, inode: F::Inode) -> io::Result<()>;
        fn getlk(&self) -> io::Result<()>;
        fn setlk(&self) -> io::Result<()>;
        fn setlkw(&self) -> io::Result<()>;
        fn ioctl(&self) -> io::Result<()>;
        fn bmap(&self) -> io::Result<()>;
        fn poll(&self) -> io::Result<()>;
        fn notify_reply(&self) -> io::Result<()>;

        [guarded] fn setattr(&self, ctx: Context, inode: F::Inode, attr: fuse::SetattrIn,
            handle: Option<F::Handle>, valid: SetattrValid) -> io::Result<(fuse::Attr, Duration)>;
        [guarded] fn symlink(&self, ctx: Context, linkname: &CStr, parent: F::Inode, name: &CStr,
            extensions: Extensions) -> io::Result<Entry>;
        [guarded] fn mknod(&self, ctx: Context, inode: F::Inode, name: &CStr, mode: u32,
            rdev: u32, umask: u32, extensions: Extensions) -> io::Result<Entry>;
        [guarded] fn mkdir(&self, ctx: Context, parent: F::Inode, name: &CStr, mode: u32,
            umask: u32, extensions: Extensions) -> io::Result<Entry>;
        [guarded] fn unlink(&self, ctx: Context, parent: F::Inode, name: &CStr) -> io::Result<()>;
        [guarded] fn rmdir(&self, ctx: Context, parent: F::Inode, name: &CStr) -> io::Result<()>;
        [guarded] fn rename(&self, ctx: Context, olddir: F::Inode, oldname: &CStr,
            newdir: F::Inode, newname: &CStr, flags: u32) -> io::Result<()>;
        [guarded] fn link(&self, ctx: Context, inode: F::Inode, newparent: F::Inode,
            newname: &CStr) -> io::Result<Entry>;
        [guarded] fn fallocate(&self, ctx: Context, inode: F::Inode, handle: F::Handle,
            mode: u32, offset: u64, length: u64) -> io::Result<()>;
        [guarded] fn removexattr(&self, ctx: Context, inode: F::Inode, name: &CStr)
            -> io::Result<()>;
        [guarded] fn copyfilerange(&self, ctx: Context, inode_in: F::Inode,
            handle_in: F::Handle, offset_in: u64, inode_out: F::Inode, handle_out: F::Handle,
            offset_out: u64, len: u64, flags: u64) -> io::Result<usize>;
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

    fn tmpfile(&self) -> io::Result<(Entry, Option<F::Handle>, OpenOptions)> {
        self.writable()?;
        let (entry, handle, options) = self.fs.tmpfile()?;
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

    fn opendir(
        &self,
        ctx: Context,
        inode: F::Inode,
        flags: u32,
    ) -> io::Result<(Option<F::Handle>, OpenOptions)> {
        self.check_open(flags)?;
        self.fs.opendir(ctx, inode, flags)
    }

    fn access(&self, ctx: Context, inode: F::Inode, mask: u32) -> io::Result<()> {
        if let Some(seal) = &self.seal {
            seal.access(mask)?;
        }
        self.fs.access(ctx, inode, mask)
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
