//! Applying image layers, in order, to a directory.
//!
//! Layers may be gzip, zstd or uncompressed tar; the format is detected from the first
//! bytes (media types are not trusted). OCI whiteouts (`.wh.NAME`) delete what lower layers
//! left, opaque markers (`.wh..wh..opq`) empty a directory of lower-layer content.
//! Hardlinks, symlinks, device nodes, FIFOs, ownership, mode bits (setuid, setgid,
//! sticky), xattrs (best effort: where the host filesystem keeps them; the `tar` crate
//! cannot read a PAX record whose value holds a newline byte, so such an attribute is
//! lost) and mtimes are kept; `mkfs.erofs` then keeps hardlinks and xattrs in the image. Entries that would land outside the root are
//! refused (see [`resolve`]). [`unpack_layers`] builds into a temp directory beside the
//! destination and renames it into place only when every layer applied, so a refused or
//! broken image leaves nothing behind.

mod apply;
pub mod resolve;

use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

pub use apply::apply_layer;

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];
/// Read buffer for compressed layer files.
const LAYER_READ_BUF_BYTES: usize = 256 * 1024;

/// Errors from unpacking layers.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// A filesystem operation failed.
    #[error("unpack: {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// The layer is not a readable (possibly compressed) tar stream.
    #[error("unpack: layer {layer}: bad tar stream: {source}")]
    Tar { layer: PathBuf, source: io::Error },
    /// An entry that would be written outside the root.
    #[error("unpack: refused entry {entry:?}: {reason}")]
    Escape {
        entry: PathBuf,
        reason: &'static str,
    },
    /// Too many symlinks while resolving an entry's path.
    #[error("unpack: refused entry {entry:?}: too many levels of symbolic links")]
    SymlinkLoop { entry: PathBuf },
    /// A hardlink whose target is not in the tree.
    #[error("unpack: hardlink {entry:?} points at missing {target:?}")]
    MissingLinkTarget { entry: PathBuf, target: PathBuf },
    /// A tar entry type we do not know how to create.
    #[error("unpack: entry {entry:?} has unsupported tar type {kind:?}")]
    UnsupportedEntry { entry: PathBuf, kind: char },
}

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Plain tar.
    None,
    /// gzip (`application/vnd.oci.image.layer.v1.tar+gzip`, Docker's default).
    Gzip,
    /// zstd (`...tar+zstd`).
    Zstd,
}

impl Compression {
    /// Detect the compression from the first bytes of a blob.
    pub fn sniff(head: &[u8]) -> Self {
        if head.starts_with(GZIP_MAGIC) {
            Self::Gzip
        } else if head.starts_with(ZSTD_MAGIC) {
            Self::Zstd
        } else {
            Self::None
        }
    }
}

/// Open a layer blob as a tar stream, decompressing as needed.
pub fn open_layer(path: &Path) -> Result<Box<dyn Read + Send>, UnpackError> {
    let io_err = |source| UnpackError::Io {
        op: "open layer",
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(io_err)?;
    let mut reader = BufReader::with_capacity(LAYER_READ_BUF_BYTES, file);
    let head = reader.fill_buf().map_err(io_err)?;
    Ok(match Compression::sniff(head) {
        Compression::None => Box::new(reader),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(reader)),
        Compression::Zstd => Box::new(zstd::Decoder::with_buffer(reader).map_err(io_err)?),
    })
}

/// Apply `layers` (blob files, lowest first) into a new directory at `dest`.
///
/// Works in a temp directory beside `dest` and renames it into place at the end; on any
/// error the temp directory is removed. If `dest` appears meanwhile (another process
/// unpacked the same image), that copy is kept and ours discarded.
pub fn unpack_layers<P: AsRef<Path>>(layers: &[P], dest: &Path) -> Result<(), UnpackError> {
    let tmp = temp_sibling(dest);
    let io_err = |op, path: &Path| {
        let path = path.to_owned();
        move |source| UnpackError::Io { op, path, source }
    };
    if let Some(parent) = dest.parent() {
        fs::create_dir_all(parent).map_err(io_err("create", parent))?;
    }
    fs::create_dir(&tmp).map_err(io_err("create", &tmp))?;
    let result = layers.iter().try_for_each(|layer| {
        let layer = layer.as_ref();
        let reader = PadToBlock::new(open_layer(layer)?);
        apply_layer(reader, &tmp, layer)
    });
    if let Err(e) = result {
        let _ = fs::remove_dir_all(&tmp);
        return Err(e);
    }
    match fs::rename(&tmp, dest) {
        Ok(()) => Ok(()),
        Err(_) if dest.is_dir() => {
            let _ = fs::remove_dir_all(&tmp);
            Ok(())
        }
        Err(source) => {
            let _ = fs::remove_dir_all(&tmp);
            Err(UnpackError::Io {
                op: "rename",
                path: dest.to_owned(),
                source,
            })
        }
    }
}

/// Tar block size.
const TAR_BLOCK_BYTES: u64 = 512;

/// Pads a stream that ends mid-block with zeros up to the block boundary. umoci 0.4.7's
/// `insert` writes layers without the final padding or end-of-archive blocks; Go's tar
/// reader accepts them, so we do too. Layers are digest-verified before they are
/// unpacked, so this cannot hide a truncated download.
struct PadToBlock<R> {
    inner: R,
    read: u64,
    padding: Option<u64>,
}

impl<R: Read> PadToBlock<R> {
    fn new(inner: R) -> Self {
        Self {
            inner,
            read: 0,
            padding: None,
        }
    }
}

impl<R: Read> Read for PadToBlock<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.padding.is_none() {
            let n = self.inner.read(buf)?;
            if n > 0 || buf.is_empty() {
                self.read += n as u64;
                return Ok(n);
            }
            let rem = self.read % TAR_BLOCK_BYTES;
            self.padding = Some(if rem == 0 { 0 } else { TAR_BLOCK_BYTES - rem });
        }
        let left = self.padding.unwrap_or(0);
        let n = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        buf[..n].fill(0);
        self.padding = Some(left - n as u64);
        Ok(n)
    }
}

fn temp_sibling(dest: &Path) -> PathBuf {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let name = dest
        .file_name()
        .map_or_else(Default::default, |n| n.to_string_lossy().into_owned());
    dest.with_file_name(format!(".{name}.unpack-{}-{nanos}", std::process::id()))
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
