//! Files latchkey creates are private to its user: directories `0700`,
//! files `0600` (on Unix; elsewhere the platform defaults apply).
//!
//! The data directory holds the master key and, by default, the SQLite
//! database with every user's password hash, so nobody else on the machine
//! has any business reading it. Existing files and directories are left as
//! they are: an operator may have chosen their modes deliberately.

use std::io;
use std::path::Path;

/// Create `path` and any missing parents with mode `0700`.
pub fn create_private_dir(path: &Path) -> io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(path)
}

/// Create the empty file `path` with mode `0600` (and its missing parent
/// directories with `0700`) unless it exists. Returns whether it was created.
pub fn create_private_file(path: &Path) -> io::Result<bool> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_private_dir(parent)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}

/// The permission bits of `path` when its group or others may access it.
#[cfg(unix)]
pub fn shared_mode(path: &Path) -> io::Result<Option<u32>> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)?.permissions().mode() & 0o777;
    Ok((mode & 0o077 != 0).then_some(mode))
}

/// The permission bits of `path` when its group or others may access it.
#[cfg(not(unix))]
pub fn shared_mode(_path: &Path) -> io::Result<Option<u32>> {
    Ok(None)
}

#[cfg(test)]
#[cfg(unix)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn created_directories_and_files_are_private_and_existing_ones_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a/b/latchkey.db");
        assert!(create_private_file(&file).unwrap());
        assert_eq!(mode(&dir.path().join("a")), 0o700);
        assert_eq!(mode(&dir.path().join("a/b")), 0o700);
        assert_eq!(mode(&file), 0o600);
        assert_eq!(shared_mode(&file).unwrap(), None);

        std::fs::write(&file, b"data").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert!(!create_private_file(&file).unwrap(), "an existing file is kept");
        assert_eq!(std::fs::read(&file).unwrap(), b"data");
        assert_eq!(shared_mode(&file).unwrap(), Some(0o640));
    }
}
