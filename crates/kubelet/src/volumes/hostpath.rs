//! hostPath volumes: the type checks of upstream's `checkTypeInternal`, creating what the
//! `...OrCreate` types ask for.

use std::os::unix::fs::{DirBuilderExt, FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// Checks (and for `DirectoryOrCreate`/`FileOrCreate` creates) `path` as hostPath `kind`
/// requires; the error is upstream's message.
pub fn check_type(path: &Path, kind: &str) -> Result<(), String> {
    let shown = path.display();
    let meta = std::fs::metadata(path).ok();
    let ft = meta.as_ref().map(|m| m.file_type());
    let is_dir = ft.is_some_and(|t| t.is_dir());
    let fail = |what: &str| Err(format!("hostPath type check failed: {shown} is not {what}"));
    match kind {
        "" => Ok(()),
        "DirectoryOrCreate" if meta.is_none() => std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(path)
            .map_err(|e| format!("hostPath: creating directory {shown}: {e}")),
        "DirectoryOrCreate" | "Directory" if !is_dir => fail("a directory"),
        "DirectoryOrCreate" | "Directory" => Ok(()),
        "FileOrCreate" if meta.is_none() => create_file(path),
        "FileOrCreate" | "File" if meta.is_none() || is_dir => fail("a file"),
        "FileOrCreate" | "File" => Ok(()),
        "Socket" if !ft.is_some_and(|t| t.is_socket()) => fail("a socket file"),
        "CharDevice" if !ft.is_some_and(|t| t.is_char_device()) => fail("a character device"),
        "BlockDevice" if !ft.is_some_and(|t| t.is_block_device()) => fail("a block device"),
        "Socket" | "CharDevice" | "BlockDevice" => Ok(()),
        other => Err(format!("{other} is an invalid volume type")),
    }
}

fn create_file(path: &Path) -> Result<(), String> {
    let shown = path.display();
    if let Some(parent) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(parent)
            .map_err(|e| format!("hostPath: creating directory {}: {e}", parent.display()))?;
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .open(path)
        .map(|_| ())
        .map_err(|e| format!("hostPath: creating file {shown}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_are_checked_as_upstream() {
        let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let d = tmp.path();
        let file = d.join("f");
        std::fs::write(&file, b"x").unwrap_or_default();
        let sock = d.join("s.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&sock);
        let missing = d.join("missing");

        assert_eq!(check_type(&missing, ""), Ok(()));
        assert_eq!(check_type(d, "Directory"), Ok(()));
        assert_eq!(
            check_type(&file, "Directory"),
            Err(format!(
                "hostPath type check failed: {} is not a directory",
                file.display()
            ))
        );
        assert!(check_type(&missing, "Directory").is_err());
        assert_eq!(check_type(&file, "File"), Ok(()));
        assert_eq!(
            check_type(d, "File"),
            Err(format!(
                "hostPath type check failed: {} is not a file",
                d.display()
            ))
        );
        assert!(check_type(&missing, "File").is_err());
        assert_eq!(check_type(&sock, "Socket"), Ok(()));
        assert_eq!(
            check_type(&file, "Socket"),
            Err(format!(
                "hostPath type check failed: {} is not a socket file",
                file.display()
            ))
        );
        assert_eq!(check_type(Path::new("/dev/null"), "CharDevice"), Ok(()));
        assert!(check_type(&file, "CharDevice").is_err());
        assert!(check_type(&file, "BlockDevice").is_err());
        assert_eq!(
            check_type(&file, "Bogus"),
            Err("Bogus is an invalid volume type".to_string())
        );

        let new_dir = d.join("a/b");
        assert_eq!(check_type(&new_dir, "DirectoryOrCreate"), Ok(()));
        assert!(new_dir.is_dir());
        assert!(check_type(&file, "DirectoryOrCreate").is_err());
        let new_file = d.join("c/f");
        assert_eq!(check_type(&new_file, "FileOrCreate"), Ok(()));
        assert!(new_file.is_file());
        assert!(check_type(d, "FileOrCreate").is_err());
    }
}
