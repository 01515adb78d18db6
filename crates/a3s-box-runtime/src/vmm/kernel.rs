//! Recognising a bootable guest kernel before the hypervisor is started, so
//! a wrong file is named as such instead of ending in a hypervisor error.
//!
//! QEMU's `microvm` boots two formats: an ELF `vmlinux` with a PVH entry
//! point (the `Xen` ELF note `XEN_ELFNOTE_PHYS32_ENTRY`, present with
//! `CONFIG_PVH`), and a `bzImage` (the x86 boot protocol header: `HdrS` at
//! offset 0x202).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use a3s_box_core::BoxError;

/// A kernel image format QEMU can boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelFormat {
    /// ELF `vmlinux` with a PVH entry note.
    PvhElf,
    /// `bzImage` (x86 boot protocol).
    BzImage,
}

const ELF_MAGIC: &[u8; 4] = b"\x7fELF";
const ELFCLASS64: u8 = 2;
const ELFDATA2LSB: u8 = 1;
const EM_X86_64: u16 = 62;
const PT_NOTE: u32 = 4;
const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;
const BZIMAGE_MAGIC_OFFSET: u64 = 0x202;
/// Notes larger than this are not read (a kernel's are a few hundred bytes).
const MAX_NOTES_BYTES: u64 = 1 << 20;
/// Program headers looked at, at most.
const MAX_PROGRAM_HEADERS: u16 = 64;

/// Check that `path` is a kernel QEMU can boot. Missing: `MissingAsset`
/// (with `hint`); anything else: `Invalid`, naming the file and why.
pub fn check(path: &Path, hint: &'static str) -> Result<KernelFormat, BoxError> {
    let mut file = match File::open(path) {
        Ok(f) if path.is_dir() => {
            drop(f);
            return Err(not_a_kernel(path, "it is a directory"));
        }
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(BoxError::MissingAsset {
                what: "guest kernel",
                path: path.to_path_buf(),
                hint,
            })
        }
        Err(e) => {
            return Err(BoxError::io(
                format!("read guest kernel {}", path.display()),
                e,
            ))
        }
    };
    detect(&mut file).map_err(|why| not_a_kernel(path, &why))
}

fn not_a_kernel(path: &Path, why: &str) -> BoxError {
    BoxError::Invalid(format!(
        "guest kernel {} is not a Linux kernel image ({why})",
        path.display()
    ))
}

/// The format of the image `r` holds, or why it is none QEMU boots.
pub fn detect(r: &mut (impl Read + Seek)) -> Result<KernelFormat, String> {
    let mut ident = [0u8; 64];
    let n = read_at(r, 0, &mut ident).map_err(|e| format!("cannot read it: {e}"))?;
    if n >= 4 && &ident[..4] == ELF_MAGIC {
        if n < 64 {
            return Err("a truncated ELF file".into());
        }
        return elf_has_pvh_note(r, &ident).map(|_| KernelFormat::PvhElf);
    }
    let mut magic = [0u8; 4];
    match read_at(r, BZIMAGE_MAGIC_OFFSET, &mut magic) {
        Ok(4) if &magic == b"HdrS" => Ok(KernelFormat::BzImage),
        _ => Err("neither an ELF vmlinux nor a bzImage".into()),
    }
}

fn elf_has_pvh_note(r: &mut (impl Read + Seek), header: &[u8; 64]) -> Result<(), String> {
    if header[4] != ELFCLASS64 || header[5] != ELFDATA2LSB || u16_at(header, 0x12) != EM_X86_64 {
        return Err("an ELF file, but not a 64-bit x86 one".into());
    }
    let phoff = u64_at(header, 0x20);
    let phentsize = u16_at(header, 0x36) as u64;
    let phnum = u16_at(header, 0x38).min(MAX_PROGRAM_HEADERS);
    if phentsize < 56 {
        return Err("an ELF file without program headers".into());
    }
    for i in 0..u64::from(phnum) {
        let mut ph = [0u8; 56];
        if read_at(r, phoff + i * phentsize, &mut ph).map_err(|e| e.to_string())? < 56 {
            return Err("a truncated ELF file".into());
        }
        if u32_at(&ph, 0) != PT_NOTE {
            continue;
        }
        let (offset, size) = (u64_at(&ph, 8), u64_at(&ph, 32).min(MAX_NOTES_BYTES));
        let mut notes = vec![0u8; size as usize];
        let got = read_at(r, offset, &mut notes).map_err(|e| e.to_string())?;
        if has_pvh_entry(&notes[..got]) {
            return Ok(());
        }
    }
    Err(
        "an ELF vmlinux without a PVH entry note: build it with CONFIG_PVH=y, or use a bzImage"
            .into(),
    )
}

/// Whether an ELF note section holds `Xen`'s PHYS32_ENTRY note.
fn has_pvh_entry(mut notes: &[u8]) -> bool {
    let align = |n: usize| (n + 3) & !3;
    while notes.len() >= 12 {
        let namesz = u32_at(notes, 0) as usize;
        let descsz = u32_at(notes, 4) as usize;
        let kind = u32_at(notes, 8);
        let name_end = 12 + align(namesz);
        let end = name_end.saturating_add(align(descsz));
        if end > notes.len() {
            return false;
        }
        if kind == XEN_ELFNOTE_PHYS32_ENTRY && &notes[12..12 + namesz] == b"Xen\0" {
            return true;
        }
        notes = &notes[end..];
    }
    false
}

fn read_at(r: &mut (impl Read + Seek), offset: u64, buf: &mut [u8]) -> std::io::Result<usize> {
    r.seek(SeekFrom::Start(offset))?;
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..])? {
            0 => break,
            n => got += n,
        }
    }
    Ok(got)
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(v)
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;

    /// A minimal ELF64 x86-64 file with one PT_NOTE segment holding `notes`.
    fn elf(notes: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 64 + 56];
        f[..4].copy_from_slice(ELF_MAGIC);
        f[4] = ELFCLASS64;
        f[5] = ELFDATA2LSB;
        f[0x12..0x14].copy_from_slice(&EM_X86_64.to_le_bytes());
        f[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
        f[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        f[0x38..0x3a].copy_from_slice(&1u16.to_le_bytes());
        f[64..68].copy_from_slice(&PT_NOTE.to_le_bytes());
        f[64 + 8..64 + 16].copy_from_slice(&120u64.to_le_bytes());
        f[64 + 32..64 + 40].copy_from_slice(&(notes.len() as u64).to_le_bytes());
        f.extend_from_slice(notes);
        f
    }

    fn note(name: &[u8], kind: u32, desc: &[u8]) -> Vec<u8> {
        let mut n = Vec::new();
        n.extend_from_slice(&(name.len() as u32).to_le_bytes());
        n.extend_from_slice(&(desc.len() as u32).to_le_bytes());
        n.extend_from_slice(&kind.to_le_bytes());
        n.extend_from_slice(name);
        n.resize(n.len().next_multiple_of(4), 0);
        n.extend_from_slice(desc);
        n.resize(n.len().next_multiple_of(4), 0);
        n
    }

    #[test]
    fn a_pvh_vmlinux_and_a_bzimage_are_recognised() {
        let mut notes = note(b"GNU\0", 3, &[1; 20]);
        notes.extend(note(b"Xen\0", XEN_ELFNOTE_PHYS32_ENTRY, &[0; 4]));
        assert_eq!(
            detect(&mut Cursor::new(elf(&notes))),
            Ok(KernelFormat::PvhElf)
        );
        let mut bz = vec![0u8; 0x300];
        bz[0x202..0x206].copy_from_slice(b"HdrS");
        assert_eq!(detect(&mut Cursor::new(bz)), Ok(KernelFormat::BzImage));
    }

    #[test]
    fn other_files_say_what_they_are() {
        let err = detect(&mut Cursor::new(
            b"root:x:0:0:root:/root:/bin/bash\n".to_vec(),
        ));
        assert_eq!(err, Err("neither an ELF vmlinux nor a bzImage".into()));
        let no_pvh = elf(&note(b"Xen\0", 5, &[0; 4]));
        assert!(detect(&mut Cursor::new(no_pvh))
            .unwrap_err()
            .contains("CONFIG_PVH"));
        let mut arm = elf(&[]);
        arm[0x12] = 183;
        assert!(detect(&mut Cursor::new(arm))
            .unwrap_err()
            .contains("not a 64-bit x86"));
        assert!(detect(&mut Cursor::new(Vec::new())).is_err());
        // A note claiming more than there is ends the scan.
        let mut bad = note(b"Xen\0", XEN_ELFNOTE_PHYS32_ENTRY, &[0; 4]);
        bad[4] = 200;
        assert!(detect(&mut Cursor::new(elf(&bad))).is_err());
    }

    #[test]
    fn check_names_the_file() {
        let err = check(Path::new("/etc/passwd"), "hint").unwrap_err();
        assert_eq!(
            err.to_string(),
            "guest kernel /etc/passwd is not a Linux kernel image (neither an ELF vmlinux nor a bzImage)"
        );
        assert_eq!(err.kind(), a3s_box_core::ErrorKind::Invalid);
        let err = check(Path::new("/nonexistent/vmlinux"), "run make setup").unwrap_err();
        assert_eq!(err.kind(), a3s_box_core::ErrorKind::Unavailable);
        assert!(err.to_string().contains("run make setup"));
        assert!(check(Path::new("/"), "h")
            .unwrap_err()
            .to_string()
            .contains("directory"));
    }
}
