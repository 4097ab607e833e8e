//! Files only the host's own user may read: the data directory (0700) and
//! what the host writes in it that holds secrets or code — databases,
//! signing keys, compiled components (0600) — whatever the umask.
//!
//! A compiled component is native code the host loads without checking
//! it, and a key signs tokens: another local user who could write or read
//! them would own the host.

use std::fs::Permissions;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// A directory's mode.
pub const DIR_MODE: u32 = 0o700;
/// A file's mode.
pub const FILE_MODE: u32 = 0o600;

/// Creates `dir` (and missing parents, each 0700) unless it exists; an
/// existing directory keeps the mode its owner gave it.
pub fn create_dir(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)?;
    // The umask may have taken bits away; none may be added.
    std::fs::set_permissions(dir, Permissions::from_mode(DIR_MODE))
}

/// Creates the empty file `path` 0600 unless it exists (SQLite then gives
/// its `-wal` and `-shm` files the same mode).
pub fn create_file(path: &Path) -> std::io::Result<()> {
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(path)
    {
        Ok(_) => std::fs::set_permissions(path, Permissions::from_mode(FILE_MODE)),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Writes `bytes` to `path` 0600, durably, replacing it at once (through
/// a temporary file beside it, so a reader never sees half a file).
pub fn write_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        create_dir(dir)?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(FILE_MODE)
        .open(&tmp)?;
    f.set_permissions(Permissions::from_mode(FILE_MODE))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    type Result = std::result::Result<(), Box<dyn std::error::Error>>;

    fn mode(path: &Path) -> std::io::Result<u32> {
        Ok(std::fs::metadata(path)?.permissions().mode() & 0o777)
    }

    // Under the usual umask 022 a plain create would give 0755 and 0644,
    // so these fail if the explicit modes are lost.
    #[test]
    fn modes_are_for_the_owner_only() -> Result {
        let tmp = tempfile::tempdir()?;
        let dir = tmp.path().join("a/b");
        create_dir(&dir)?;
        create_file(&dir.join("f"))?;
        write_file(&dir.join("k"), b"secret")?;
        assert_eq!(mode(&dir)?, 0o700);
        assert_eq!(mode(&tmp.path().join("a"))?, 0o700);
        assert_eq!(mode(&dir.join("f"))?, 0o600);
        assert_eq!(mode(&dir.join("k"))?, 0o600);
        assert_eq!(std::fs::read(dir.join("k"))?, b"secret");
        write_file(&dir.join("k"), b"second")?;
        assert_eq!(
            std::fs::read(dir.join("k"))?,
            b"second",
            "an atomic write replaces"
        );
        assert_eq!(mode(&dir.join("k"))?, 0o600);
        Ok(())
    }
}
