//! Loop devices: an image file (the EROFS image of a container that joins a
//! running sandbox, on a read-only share) attached read-only as a block
//! device with `LOOP_CONFIGURE`, so it can be mounted. The device clears
//! itself (`LO_FLAGS_AUTOCLEAR`) once its filesystem is unmounted.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;

use nix::errno::Errno;

use crate::error::{Context, InitError};

const LOOP_CONTROL: &str = "/dev/loop-control";
/// `LOOP_CTL_GET_FREE`: the number of a free loop device (made if needed).
const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;
/// `LOOP_CONFIGURE`: attach a file and set its parameters in one call.
const LOOP_CONFIGURE: libc::c_ulong = 0x4C0A;
const LO_FLAGS_READ_ONLY: u32 = 1;
const LO_FLAGS_AUTOCLEAR: u32 = 4;
/// Tries when another attach takes the free device first.
const ATTACH_TRIES: usize = 8;

/// `struct loop_info64` of `<linux/loop.h>`.
#[repr(C)]
struct LoopInfo64 {
    lo_device: u64,
    lo_inode: u64,
    lo_rdevice: u64,
    lo_offset: u64,
    lo_sizelimit: u64,
    lo_number: u32,
    lo_encrypt_type: u32,
    lo_encrypt_key_size: u32,
    lo_flags: u32,
    lo_file_name: [u8; 64],
    lo_crypt_name: [u8; 64],
    lo_encrypt_key: [u8; 32],
    lo_init: [u64; 2],
}

/// `struct loop_config` of `<linux/loop.h>`.
#[repr(C)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

fn config_for(file: &File) -> Result<LoopConfig, Errno> {
    // SAFETY: LoopConfig is plain data; all zeroes is a valid value.
    let mut config: LoopConfig = unsafe { std::mem::zeroed() };
    config.fd = u32::try_from(file.as_raw_fd()).map_err(|_| Errno::EBADF)?;
    config.info.lo_flags = LO_FLAGS_READ_ONLY | LO_FLAGS_AUTOCLEAR;
    Ok(config)
}

/// An attached loop device, held open: with `LO_FLAGS_AUTOCLEAR` it would
/// detach at its last close, so keep it until its filesystem is mounted.
#[derive(Debug)]
pub struct LoopDevice {
    /// `/dev/loopN`.
    pub path: String,
    _open: File,
}

/// Attach `file` read-only to a free loop device.
pub fn attach_read_only(file: &File, what: &str) -> Result<LoopDevice, InitError> {
    let control = OpenOptions::new()
        .read(true)
        .write(true)
        .open(LOOP_CONTROL)
        .context(|| format!("open {LOOP_CONTROL}"))?;
    let config = config_for(file).context(|| format!("attach {what}"))?;
    let mut last = Errno::EBUSY;
    for _ in 0..ATTACH_TRIES {
        // SAFETY: LOOP_CTL_GET_FREE takes no argument and returns a number.
        let n = unsafe { libc::ioctl(control.as_raw_fd(), LOOP_CTL_GET_FREE as _) };
        let n = Errno::result(n).context(|| "find a free loop device".into())?;
        let path = format!("/dev/loop{n}");
        let device = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .context(|| format!("open {path}"))?;
        // SAFETY: `config` is a valid loop_config naming an open file; the
        // kernel only reads it.
        let rc = unsafe {
            libc::ioctl(
                device.as_raw_fd(),
                LOOP_CONFIGURE as _,
                &config as *const LoopConfig,
            )
        };
        match Errno::result(rc) {
            Ok(_) => {
                return Ok(LoopDevice {
                    path,
                    _open: device,
                })
            }
            // Another attach took this device between the two calls.
            Err(Errno::EBUSY) => last = Errno::EBUSY,
            Err(e) => return Err(e).context(|| format!("attach {what} to {path}")),
        }
    }
    Err(last).context(|| format!("attach {what} to a loop device"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_structs_have_the_kernels_sizes() {
        assert_eq!(std::mem::size_of::<LoopInfo64>(), 232);
        assert_eq!(std::mem::size_of::<LoopConfig>(), 304);
    }

    #[test]
    fn the_config_is_read_only_and_clears_itself() {
        let file = File::open("/dev/null").unwrap();
        let config = config_for(&file).unwrap();
        assert_eq!(config.fd as i32, file.as_raw_fd());
        assert_eq!(config.info.lo_flags, 1 | 4);
        assert_eq!(config.block_size, 0);
    }
}
