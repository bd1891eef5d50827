//! File descriptors as message payloads: long input and output travel as anonymous memory
//! files, so a message body never carries them.

use std::io::{Read, Seek, Write};

use zbus::OwnedFd;

/// An anonymous memory file (`memfd_create`) holding `bytes`, positioned at the start.
///
/// # Errors
/// The kernel refusing the file or the write.
pub fn memory_file(name: &str, bytes: &[u8]) -> std::io::Result<OwnedFd> {
    let cname = std::ffi::CString::new(name)?;
    // SAFETY: `cname` is a valid C string; memfd_create returns a new descriptor or -1.
    let fd = unsafe { libc::memfd_create(cname.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` was just created and is owned by nobody else.
    let mut file = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    file.write_all(bytes)?;
    file.rewind()?;
    Ok(std::os::fd::OwnedFd::from(file).into())
}

/// Everything readable from `fd`, refusing more than `limit` bytes.
///
/// # Errors
/// A read error, or more than `limit` bytes (`InvalidData`).
pub fn read_all(fd: OwnedFd, limit: u64) -> std::io::Result<Vec<u8>> {
    let file = std::fs::File::from(std::os::fd::OwnedFd::from(fd));
    let mut bytes = Vec::new();
    file.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("more than {limit} bytes"),
        ));
    }
    Ok(bytes)
}
