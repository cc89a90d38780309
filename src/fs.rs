//! The one door to the disk: part and state file names, directory creation that refuses
//! symlinks, positional writes, fsync + atomic rename, the destination lock and the sweep.
//! Knows paths and files, never HTTP or Azure.
use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

/// Suffix of a part file (`.<basename>.jobdl-part`).
pub const PART_SUFFIX: &str = ".jobdl-part";
/// Suffix of a resume record (`.<basename>.jobdl-state`).
pub const STATE_SUFFIX: &str = ".jobdl-state";
/// Directory holding the lock inside a destination.
pub const META_DIR: &str = ".jobdl";

fn sibling(dest: &Path, suffix: &str) -> PathBuf {
    let base = dest.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    dest.with_file_name(format!(".{base}{suffix}"))
}

/// The part file of a final path: one fixed name, so that a rerun finds it.
pub fn part_path(dest: &Path) -> PathBuf {
    sibling(dest, PART_SUFFIX)
}

/// The resume record beside a part file.
pub fn state_path(dest: &Path) -> PathBuf {
    sibling(dest, STATE_SUFFIX)
}

/// Whether a file name is one of jobdl's working files.
pub fn is_working_file(name: &str) -> bool {
    name.starts_with('.') && (name.ends_with(PART_SUFFIX) || name.ends_with(STATE_SUFFIX))
}

/// Create `dir` (which must be `root` or inside it) and its parents, refusing to pass through
/// a symlink or a non-directory below `root`. `root` itself must already exist.
pub fn create_dir_inside(root: &Path, dir: &Path) -> io::Result<()> {
    create_dir_inside_recording(root, dir, &mut Vec::new())
}

/// [`create_dir_inside`], appending each directory it created to `created` (parents first), so
/// that a failed attempt can remove exactly those.
pub fn create_dir_inside_recording(root: &Path, dir: &Path, created: &mut Vec<std::path::PathBuf>) -> io::Result<()> {
    let rel = dir
        .strip_prefix(root)
        .map_err(|_| io::Error::other(format!("{} is outside {}", dir.display(), root.display())))?;
    let mut cur = root.to_path_buf();
    for comp in rel.components() {
        cur.push(comp);
        match std::fs::symlink_metadata(&cur) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(io::Error::other(format!("refusing to write through symlink {}", cur.display())));
            }
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(io::Error::other(format!("{} exists and is not a directory", cur.display()))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => match std::fs::create_dir(&cur) {
                Ok(()) => created.push(cur.clone()),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && cur.is_dir() => {}
                Err(e) => return Err(io::Error::new(e.kind(), format!("cannot create {}: {e}", cur.display()))),
            },
            Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", cur.display()))),
        }
    }
    Ok(())
}

/// Open (creating if needed) a part file for writing without truncating it.
pub fn open_part(path: &Path) -> io::Result<File> {
    OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)
}

/// Write all of `buf` at `offset` (positional; loops on short writes).
pub fn write_all_at(file: &File, mut buf: &[u8], mut offset: u64) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    while !buf.is_empty() {
        let n = file.write_at(buf, offset)?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::WriteZero, "short write"));
        }
        buf = &buf[n..];
        offset += n as u64;
    }
    Ok(())
}

/// Start writing back `len` bytes at `offset` without waiting (Linux `sync_file_range`), so the
/// fdatasync before the rename has little left to do. A no-op elsewhere; errors are ignored
/// because the final fdatasync is what guarantees durability.
pub fn start_writeback(file: &File, offset: u64, len: u64) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let (Ok(off), Ok(n)) = (i64::try_from(offset), i64::try_from(len)) else { return };
        // SAFETY: a valid open descriptor and plain integers; the call only schedules I/O.
        unsafe {
            libc::sync_file_range(file.as_raw_fd(), off, n, libc::SYNC_FILE_RANGE_WRITE);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, offset, len);
}

/// Make `part` durable, then rename it over `dest` (atomic on the same file system).
pub fn publish(part: &Path, file: &File, dest: &Path) -> io::Result<()> {
    file.sync_data()?;
    std::fs::rename(part, dest)
}

/// Make every written byte of the file system holding `file` durable (Linux `syncfs`): one
/// barrier for many small files. Elsewhere an error, so callers fall back to per-file syncs.
pub fn sync_filesystem(file: &File) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: a valid open descriptor; syncfs only flushes.
        let rc = unsafe { libc::syncfs(file.as_raw_fd()) };
        if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = file;
        Err(io::Error::new(io::ErrorKind::Unsupported, "syncfs is Linux-only"))
    }
}

/// fsync a directory so that renames inside it are durable.
pub fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Remove a file, ignoring "not found".
pub fn remove_if_exists(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Extended attribute holding the ETag of the object a file was downloaded from, so that
/// `--skip-existing` can tell an unchanged object from one rewritten with the same size when the
/// service gives no MD5. It lives on the file itself (set on the part file before the rename, so
/// it is there exactly when the file is); `.jobdl/` keeps nothing between runs.
const ETAG_XATTR: &str = "user.jobdl.etag";

/// What a file says about the object it came from.
#[derive(Debug, PartialEq, Eq)]
pub enum SourceTag {
    /// The ETag recorded when jobdl wrote the file, which has not been modified since.
    Etag(String),
    /// Recorded, but the file was modified after jobdl wrote it (its mtime moved).
    Modified,
    /// No record (a file jobdl did not write, or written before records existed).
    None,
    /// The file system keeps no extended attributes: nothing can be recorded here.
    Unsupported,
}

/// Modification time in nanoseconds since the epoch (0 when unknown).
fn mtime_ns(meta: &std::fs::Metadata) -> u128 {
    meta.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map_or(0, |d| d.as_nanos())
}

/// Record `etag` on `file`, with the file's modification time so that a later local edit shows
/// (best effort: a file system without user xattrs keeps none). Call after the last write.
pub fn record_source_etag(file: &File, etag: &str) -> io::Result<()> {
    let value = format!("{etag}\n{}", mtime_ns(&file.metadata()?));
    xattr::set(file, ETAG_XATTR, value.as_bytes())
}

/// The ETag recorded on the file at `path`, if the file is as jobdl left it.
pub fn source_etag(path: &Path) -> SourceTag {
    match xattr::get(path, ETAG_XATTR) {
        Ok(Some(v)) => {
            let Ok(text) = String::from_utf8(v) else { return SourceTag::None };
            let Some((etag, mtime)) = text.rsplit_once('\n') else { return SourceTag::None };
            match std::fs::symlink_metadata(path) {
                Ok(m) if mtime.parse::<u128>().ok() == Some(mtime_ns(&m)) => SourceTag::Etag(etag.to_string()),
                Ok(_) => SourceTag::Modified,
                Err(_) => SourceTag::None,
            }
        }
        Ok(None) => SourceTag::None,
        Err(e) if xattr::unsupported(&e) => SourceTag::Unsupported,
        Err(_) => SourceTag::None,
    }
}

/// Minimal extended-attribute calls (Linux and macOS; elsewhere unsupported).
mod xattr {
    use std::fs::File;
    use std::io;
    use std::path::Path;

    /// Whether `e` says the file system (or platform) has no user xattrs.
    pub fn unsupported(e: &io::Error) -> bool {
        e.kind() == io::ErrorKind::Unsupported || e.raw_os_error() == Some(libc_enotsup())
    }

    #[cfg(any(target_os = "linux", target_os = "macos"))]
    fn libc_enotsup() -> i32 {
        libc::ENOTSUP
    }
    #[cfg(not(any(target_os = "linux", target_os = "macos")))]
    fn libc_enotsup() -> i32 {
        -1
    }

    #[cfg(any(target_os = "linux", target_os = "macos"))]
    fn cname(name: &str) -> io::Result<std::ffi::CString> {
        std::ffi::CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
    }

    #[cfg(any(target_os = "linux", target_os = "macos"))]
    fn cpath(path: &Path) -> io::Result<std::ffi::CString> {
        use std::os::unix::ffi::OsStrExt;
        std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
    }

    #[cfg(any(target_os = "linux", target_os = "macos"))]
    pub fn set(file: &File, name: &str, value: &[u8]) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let n = cname(name)?;
        // SAFETY: valid fd, NUL-terminated name, value pointer/length from a live slice.
        #[cfg(target_os = "linux")]
        let rc = unsafe { libc::fsetxattr(file.as_raw_fd(), n.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
        // SAFETY: as above; macOS adds a position (0) and options (0).
        #[cfg(target_os = "macos")]
        let rc = unsafe { libc::fsetxattr(file.as_raw_fd(), n.as_ptr(), value.as_ptr().cast(), value.len(), 0, 0) };
        if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
    }

    #[cfg(any(target_os = "linux", target_os = "macos"))]
    pub fn get(path: &Path, name: &str) -> io::Result<Option<Vec<u8>>> {
        let (p, n) = (cpath(path)?, cname(name)?);
        let mut buf = vec![0u8; 256];
        // SAFETY: NUL-terminated path and name; the buffer outlives the call and its length is passed.
        #[cfg(target_os = "linux")]
        let rc = unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        // SAFETY: as above; macOS adds a position (0) and XATTR_NOFOLLOW.
        #[cfg(target_os = "macos")]
        let rc = unsafe {
            libc::getxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len(), 0, libc::XATTR_NOFOLLOW)
        };
        if rc < 0 {
            let e = io::Error::last_os_error();
            #[cfg(target_os = "linux")]
            let absent = e.raw_os_error() == Some(libc::ENODATA);
            #[cfg(target_os = "macos")]
            let absent = e.raw_os_error() == Some(libc::ENOATTR);
            // ERANGE: a value longer than any ETag jobdl writes; not ours.
            return if absent || e.raw_os_error() == Some(libc::ERANGE) { Ok(None) } else { Err(e) };
        }
        buf.truncate(usize::try_from(rc).unwrap_or(0));
        Ok(Some(buf))
    }

    #[cfg(not(any(target_os = "linux", target_os = "macos")))]
    pub fn set(_file: &File, _name: &str, _value: &[u8]) -> io::Result<()> {
        Err(io::ErrorKind::Unsupported.into())
    }

    #[cfg(not(any(target_os = "linux", target_os = "macos")))]
    pub fn get(_path: &Path, _name: &str) -> io::Result<Option<Vec<u8>>> {
        Err(io::ErrorKind::Unsupported.into())
    }
}

/// The cross-process lock on a destination, held for the whole run (OS advisory lock).
#[derive(Debug)]
pub struct DestLock {
    file: File,
    path: PathBuf,
}

impl DestLock {
    /// Create `<root>/.jobdl/lock` and take an exclusive lock without waiting.
    ///
    /// A holder removes the lock file when it is done ([`DestLock::release`]); a process that
    /// locked the old, unlinked file then sees that the path no longer names what it locked and
    /// tries again, so two processes never both hold "the" lock.
    pub fn acquire(root: &Path) -> io::Result<DestLock> {
        use std::os::unix::fs::MetadataExt;
        let meta = root.join(META_DIR);
        let path = meta.join("lock");
        for _ in 0..16 {
            create_dir_inside(root, &meta)?;
            let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path)?;
            match file.try_lock() {
                Ok(()) => {}
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(io::Error::new(
                        io::ErrorKind::WouldBlock,
                        format!("another jobdl is already writing to {}", root.display()),
                    ));
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(e),
            }
            let held = file.metadata()?;
            match std::fs::symlink_metadata(&path) {
                Ok(now) if now.ino() == held.ino() && now.dev() == held.dev() => return Ok(DestLock { file, path }),
                _ => continue, // the holder removed it as we opened it: take the new one
            }
        }
        Err(io::Error::other(format!("cannot take the lock {}", path.display())))
    }

    /// Remove the lock file (and `.jobdl/` when empty) while still holding the lock, then
    /// release it: after a run the destination holds only the payload.
    pub fn release(self) {
        let _ = std::fs::remove_file(&self.path);
        if let Some(dir) = self.path.parent() {
            let _ = std::fs::remove_dir(dir);
        }
        drop(self.file);
    }
}

/// Delete jobdl working files under `root` whose final path is not in `keep`. Returns the count.
/// Only exact working-file names are touched; symlinked directories are not followed.
pub fn sweep_orphans(root: &Path, keep: &HashSet<PathBuf>) -> io::Result<usize> {
    let mut removed = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let ft = entry.file_type()?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if ft.is_dir() {
                if !(dir == root && name == META_DIR) {
                    stack.push(entry.path());
                }
            } else if ft.is_file() && is_working_file(&name) {
                let suffix = if name.ends_with(PART_SUFFIX) { PART_SUFFIX } else { STATE_SUFFIX };
                let final_name = &name[1..name.len() - suffix.len()];
                if !keep.contains(&dir.join(final_name)) {
                    remove_if_exists(&entry.path())?;
                    removed += 1;
                }
            }
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_etag_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = File::create(&path).unwrap();
        let before = source_etag(&path);
        match record_source_etag(&file, "\"0x8DE1\"") {
            Ok(()) => {
                assert_eq!(before, SourceTag::None);
                assert_eq!(source_etag(&path), SourceTag::Etag("\"0x8DE1\"".into()));
                // Kept across the rename that publishes a part file.
                let moved = dir.path().join("g");
                std::fs::rename(&path, &moved).unwrap();
                assert_eq!(source_etag(&moved), SourceTag::Etag("\"0x8DE1\"".into()));
                // A later write moves the mtime: the record no longer vouches for the bytes.
                std::thread::sleep(std::time::Duration::from_millis(20));
                std::fs::write(&moved, b"edited").unwrap();
                assert_eq!(source_etag(&moved), SourceTag::Modified);
            }
            Err(e) => {
                assert!(xattr::unsupported(&e), "{e}");
                assert_eq!(source_etag(&path), SourceTag::Unsupported);
            }
        }
        assert_eq!(source_etag(&dir.path().join("missing")), SourceTag::None);
    }

    #[test]
    fn working_file_names() {
        let d = Path::new("/r/a/x.tmp");
        assert_eq!(part_path(d), Path::new("/r/a/.x.tmp.jobdl-part"));
        assert_eq!(state_path(d), Path::new("/r/a/.x.tmp.jobdl-state"));
        assert!(is_working_file(".x.jobdl-part"));
        assert!(!is_working_file("x.jobdl-part"));
        assert!(!is_working_file("x.tmp"));
    }

    #[test]
    fn create_dir_refuses_symlinks_and_files() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), root.join("link")).unwrap();
        std::fs::write(root.join("file"), b"x").unwrap();
        assert!(create_dir_inside(root, &root.join("a/b")).is_ok());
        assert!(create_dir_inside(root, &root.join("link/b")).is_err());
        assert!(create_dir_inside(root, &root.join("file/b")).is_err());
        assert!(!outside.path().join("b").exists());
    }

    #[test]
    fn lock_is_exclusive() {
        let t = tempfile::tempdir().unwrap();
        let a = DestLock::acquire(t.path()).unwrap();
        assert!(DestLock::acquire(t.path()).is_err());
        drop(a);
        let b = DestLock::acquire(t.path()).unwrap();
        // A process that opened the file before the holder removed it must not count as holding it.
        let stale = File::open(t.path().join(".jobdl/lock")).unwrap();
        b.release();
        assert!(!t.path().join(".jobdl").exists());
        assert!(stale.try_lock().is_ok(), "the unlinked file can be locked...");
        let c = DestLock::acquire(t.path()).unwrap();
        assert!(DestLock::acquire(t.path()).is_err(), "...but the path names a new, held lock");
        drop(c);
    }

    #[test]
    fn sweep_keeps_planned_and_foreign_files() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        for n in [".a.jobdl-part", ".a.jobdl-state", ".b.jobdl-part", "c.tmp", "d.jobdl-part"] {
            std::fs::write(r.join(n), b"x").unwrap();
        }
        let keep: HashSet<PathBuf> = [r.join("a")].into_iter().collect();
        assert_eq!(sweep_orphans(r, &keep).unwrap(), 1);
        assert!(r.join(".a.jobdl-part").exists() && r.join("c.tmp").exists() && r.join("d.jobdl-part").exists());
        assert!(!r.join(".b.jobdl-part").exists());
    }
}
