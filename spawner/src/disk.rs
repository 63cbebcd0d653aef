//! Free space on the spawner's disks: the one statvfs read behind installs, unpacks and
//! spawns refusing to start on a full disk.

use std::path::Path;

/// Bytes free for an unprivileged writer in the file system holding `dir`.
pub fn free_bytes(dir: &Path) -> std::io::Result<u64> {
    let stat = nix::sys::statvfs::statvfs(dir).map_err(std::io::Error::from)?;
    #[allow(clippy::useless_conversion)] // the field widths differ between platforms
    let (avail, frag) = (
        u64::from(stat.blocks_available()),
        u64::from(stat.fragment_size()),
    );
    Ok(avail.saturating_mul(frag))
}

#[cfg(test)]
mod tests {
    #[test]
    fn free_space_is_readable() {
        let dir = tempfile::tempdir().unwrap();
        assert!(super::free_bytes(dir.path()).unwrap() > 0);
        assert!(super::free_bytes(&dir.path().join("missing")).is_err());
    }
}
