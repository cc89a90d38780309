//! The one door to the disk: every file and directory jobdl creates, opens, renames or removes
//! goes through a [`Dir`] held open from the moment the destination was proven, resolving one
//! component at a time without following links. Also part and state file names, positional
//! writes, durability, the destination lock and the sweep. Knows paths and files, never HTTP or
//! Azure.
use rustix::fs::{self as rfs, AtFlags, Mode, OFlags};
use rustix::io::Errno;
use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

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

/// Create the destination root the user named, and its parents (a path the user gave, resolved
/// as given); everything below it is created through [`Dir`].
pub fn create_root(path: &Path) -> io::Result<()> {
    std::fs::create_dir_all(path)
}

/// A directory held open from the moment it was proven: every name below it is resolved from
/// this descriptor one component at a time, never following a symlink, so that a directory
/// swapped for a link during the run (a shared scratch folder, /tmp) cannot redirect a write.
/// Cheap to clone (the descriptor is shared).
#[derive(Debug, Clone)]
pub struct Dir {
    fd: Arc<OwnedFd>,
    path: PathBuf,
}

/// Flags of every descriptor jobdl opens: never through a link, never inherited by a child.
fn base_flags() -> OFlags {
    OFlags::NOFOLLOW | OFlags::CLOEXEC
}

/// A name for error messages: the path it stands for.
fn at(dir: &Path, name: &OsStr) -> PathBuf {
    dir.join(name)
}

fn with_path(e: io::Error, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// The error for a symlink met where a directory or a file of jobdl's must go.
fn link_refused(path: &Path) -> io::Error {
    io::Error::other(format!("refusing to write through symlink {}", path.display()))
}

impl Dir {
    /// Open the destination root the user named (resolved once, here, like any path the user
    /// gives: a root that is a symlink to a directory is the user's choice). Nothing below it is
    /// ever reached through a link.
    pub fn open_root(path: &Path) -> io::Result<Dir> {
        let fd = rfs::openat(rfs::CWD, path, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| with_path(e.into(), path))?;
        Ok(Dir { fd: Arc::new(fd), path: path.to_path_buf() })
    }

    /// The path this directory was opened as (for messages and relative lookups).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `abs` relative to this directory: plain components only.
    fn relative<'p>(&self, abs: &'p Path) -> io::Result<&'p Path> {
        let rel = abs
            .strip_prefix(&self.path)
            .map_err(|_| io::Error::other(format!("{} is outside {}", abs.display(), self.path.display())))?;
        if rel.components().all(|c| matches!(c, Component::Normal(_))) {
            Ok(rel)
        } else {
            Err(io::Error::other(format!("{} is not a plain path below {}", abs.display(), self.path.display())))
        }
    }

    /// The directory `name` inside this one, never through a link.
    fn child(&self, name: &OsStr) -> io::Result<Dir> {
        let path = at(&self.path, name);
        match rfs::openat(&*self.fd, name, OFlags::RDONLY | OFlags::DIRECTORY | base_flags(), Mode::empty()) {
            Ok(fd) => Ok(Dir { fd: Arc::new(fd), path }),
            // Linux says ENOTDIR for a link opened with O_DIRECTORY | O_NOFOLLOW, others ELOOP.
            Err(Errno::LOOP) => Err(link_refused(&path)),
            Err(Errno::NOTDIR) if is_symlink(self, name) => Err(link_refused(&path)),
            Err(Errno::NOTDIR) => Err(io::Error::other(format!("{} exists and is not a directory", path.display()))),
            Err(e) => Err(with_path(e.into(), &path)),
        }
    }

    /// The directory at `abs` (this one or below it), which must exist; no link is followed.
    pub fn subdir(&self, abs: &Path) -> io::Result<Dir> {
        let mut cur = self.clone();
        for c in self.relative(abs)?.components() {
            cur = cur.child(c.as_os_str())?;
        }
        Ok(cur)
    }

    /// Create the directory at `abs` (this one or below it) and its parents, refusing to pass
    /// through a symlink or a non-directory, appending each directory it created to `created`
    /// (parents first) so that a failed attempt can remove exactly those.
    pub fn create_subdir(&self, abs: &Path, created: &mut Vec<PathBuf>) -> io::Result<Dir> {
        let mut cur = self.clone();
        for c in self.relative(abs)?.components() {
            let name = c.as_os_str();
            match rfs::mkdirat(&*cur.fd, name, Mode::from_raw_mode(0o777)) {
                Ok(()) => created.push(at(&cur.path, name)),
                Err(Errno::EXIST) => {}
                Err(e) => {
                    return Err(io::Error::new(
                        io::Error::from(e).kind(),
                        format!("cannot create {}: {e}", at(&cur.path, name).display()),
                    ));
                }
            }
            cur = cur.child(name)?;
        }
        Ok(cur)
    }

    /// Create the directory at `abs` and its parents (see [`Dir::create_subdir`]).
    pub fn create_dir_all(&self, abs: &Path) -> io::Result<Dir> {
        self.create_subdir(abs, &mut Vec::new())
    }

    /// The place of the file at `abs` (its parent directory must exist; no link is followed).
    pub fn place(&self, abs: &Path) -> io::Result<Place> {
        let name =
            abs.file_name().ok_or_else(|| io::Error::other(format!("{} names no file", abs.display())))?.to_os_string();
        let parent = abs.parent().unwrap_or(abs);
        Ok(Place { dir: self.subdir(parent)?, name })
    }

    /// Make the renames inside this directory durable.
    pub fn sync(&self) -> io::Result<()> {
        rfs::fsync(&*self.fd).map_err(|e| with_path(e.into(), &self.path))
    }

    /// Bytes an unprivileged writer may still use on this file system, when it says.
    pub fn free_bytes(&self) -> Option<u64> {
        let v = rfs::fstatvfs(&*self.fd).ok()?;
        Some(v.f_bavail.saturating_mul(v.f_frsize))
    }

    /// Open `name` for reading when it is a regular file (a link is not followed): `None` when
    /// it is absent or not a regular file.
    pub fn open_regular(&self, name: &OsStr) -> io::Result<Option<File>> {
        match rfs::openat(&*self.fd, name, OFlags::RDONLY | OFlags::NONBLOCK | base_flags(), Mode::empty()) {
            Ok(fd) => {
                let file = File::from(fd);
                Ok(file.metadata()?.is_file().then_some(file))
            }
            Err(Errno::NOENT | Errno::LOOP) => Ok(None),
            Err(e) => Err(with_path(e.into(), &at(&self.path, name))),
        }
    }

    /// Create `name` as a new, empty file for writing. Whatever a stale or planted entry of that
    /// name is (a link anywhere, a FIFO, a hard link to a file elsewhere) is unlinked first; the
    /// file is then created exclusively, so the bytes can only land in a file made here.
    pub fn create_fresh(&self, name: &OsStr) -> io::Result<File> {
        for _ in 0..8 {
            self.remove_file(name)?;
            let flags = OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | base_flags();
            match rfs::openat(&*self.fd, name, flags, Mode::from_raw_mode(0o666)) {
                Ok(fd) => return Ok(File::from(fd)),
                Err(Errno::EXIST) => continue, // planted again between the unlink and the create
                Err(e) => return Err(with_path(e.into(), &at(&self.path, name))),
            }
        }
        Err(io::Error::other(format!(
            "cannot create {}: something keeps re-creating it",
            at(&self.path, name).display()
        )))
    }

    /// Remove the file (or link) `name`, ignoring "not found". A directory is left alone.
    pub fn remove_file(&self, name: &OsStr) -> io::Result<()> {
        match rfs::unlinkat(&*self.fd, name, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(with_path(e.into(), &at(&self.path, name))),
        }
    }

    /// Remove the empty directory `name`.
    pub fn remove_dir(&self, name: &OsStr) -> io::Result<()> {
        rfs::unlinkat(&*self.fd, name, AtFlags::REMOVEDIR).map_err(|e| with_path(e.into(), &at(&self.path, name)))
    }

    /// Rename `from` to `to`, both in this directory (an entry at `to`, link or file, is
    /// replaced, never followed).
    pub fn rename(&self, from: &OsStr, to: &OsStr) -> io::Result<()> {
        rfs::renameat(&*self.fd, from, &*self.fd, to).map_err(|e| with_path(e.into(), &at(&self.path, to)))
    }

    /// Remove the file at `abs` (below this directory), ignoring "not found".
    pub fn remove_file_at(&self, abs: &Path) -> io::Result<()> {
        let p = self.place(abs)?;
        p.dir.remove_file(&p.name)
    }

    /// Remove the empty directory at `abs` (strictly below this directory).
    pub fn remove_dir_at(&self, abs: &Path) -> io::Result<()> {
        let p = self.place(abs)?;
        p.dir.remove_dir(&p.name)
    }

    /// Rename the file at `from` to `to`, both in the same directory below this one.
    pub fn rename_at(&self, from: &Path, to: &Path) -> io::Result<()> {
        let (f, t) = (self.place(from)?, self.place(to)?);
        if f.dir.path != t.dir.path {
            return Err(io::Error::other(format!(
                "{} and {} are in different directories",
                from.display(),
                to.display()
            )));
        }
        f.dir.rename(&f.name, &t.name)
    }

    /// Move the directory at `from` to `to` (both strictly below this directory; `to`'s parent
    /// must exist) with one rename, so that everything in it appears at `to` at once. No link
    /// is followed on the way to either.
    pub fn move_dir_at(&self, from: &Path, to: &Path) -> io::Result<()> {
        let (f, t) = (self.place(from)?, self.place(to)?);
        rfs::renameat(&*f.dir.fd, &f.name, &*t.dir.fd, &t.name).map_err(|e| with_path(e.into(), to))
    }

    /// Read the regular file `name` (at most `limit` bytes; a link is not followed): `None` when
    /// it is absent or not a regular file, an error when it is longer than `limit`.
    pub fn read_regular(&self, name: &OsStr, limit: u64) -> io::Result<Option<Vec<u8>>> {
        let Some(f) = self.open_regular(name)? else { return Ok(None) };
        let mut out = Vec::new();
        io::Read::read_to_end(&mut io::Read::take(f, limit.saturating_add(1)), &mut out)
            .map_err(|e| with_path(e, &at(&self.path, name)))?;
        if out.len() as u64 > limit {
            return Err(io::Error::other(format!("{} is larger than {limit} bytes", at(&self.path, name).display())));
        }
        Ok(Some(out))
    }

    /// Replace the file `name` atomically with `bytes`: a fresh `.<name>.tmp` sibling (whatever
    /// stood at that name is unlinked, never followed) is written, made durable and renamed over
    /// `name`, then the directory is synced. A crash leaves the old file or the new one.
    pub fn replace_file(&self, name: &OsStr, bytes: &[u8]) -> io::Result<()> {
        let tmp = working_name(name, ".tmp");
        let f = self.create_fresh(&tmp)?;
        let written = io::Write::write_all(&mut &f, bytes).and_then(|()| f.sync_data());
        if let Err(e) = written {
            let _ = self.remove_file(&tmp);
            return Err(with_path(e, &at(&self.path, &tmp)));
        }
        self.rename(&tmp, name)?;
        self.sync()
    }

    /// Create the file at `abs` afresh (see [`Dir::create_fresh`]); its directory must exist.
    pub fn create_fresh_at(&self, abs: &Path) -> io::Result<File> {
        let p = self.place(abs)?;
        p.dir.create_fresh(&p.name)
    }
}

/// A final file's place: its directory (held open) and its name. Its part file and resume
/// record live beside it, under fixed working names.
#[derive(Debug, Clone)]
pub struct Place {
    /// The directory holding the file.
    pub dir: Dir,
    name: OsString,
}

fn working_name(name: &OsStr, suffix: &str) -> OsString {
    let mut n = OsString::from(".");
    n.push(name);
    n.push(suffix);
    n
}

impl Place {
    /// The final file's name.
    pub fn name(&self) -> &OsStr {
        &self.name
    }

    /// The final path (for messages).
    pub fn dest_path(&self) -> PathBuf {
        at(&self.dir.path, &self.name)
    }

    /// The part file's name.
    pub fn part_name(&self) -> OsString {
        working_name(&self.name, PART_SUFFIX)
    }

    /// The resume record's name.
    pub fn state_name(&self) -> OsString {
        working_name(&self.name, STATE_SUFFIX)
    }

    /// The part file's path (for messages).
    pub fn part_path(&self) -> PathBuf {
        at(&self.dir.path, &self.part_name())
    }

    /// Open the part file for writing without truncating it, holding an exclusive lock on it
    /// for as long as the file is open: two runs whose destinations nest never write one file
    /// at once (the second is told the file is busy). A part that is not a plain regular file
    /// of one link (a symlink, a FIFO, a hard link to a file elsewhere) is replaced by a new one.
    pub fn open_part(&self) -> io::Result<File> {
        let name = self.part_name();
        let path = at(&self.dir.path, &name);
        let file =
            match rfs::openat(&*self.dir.fd, &*name, OFlags::RDWR | OFlags::NONBLOCK | base_flags(), Mode::empty()) {
                Ok(fd) => {
                    let file = File::from(fd);
                    let meta = file.metadata()?;
                    if meta.is_file() && meta.nlink() == 1 {
                        file
                    } else {
                        drop(file);
                        self.dir.create_fresh(&name)?
                    }
                }
                Err(Errno::NOENT | Errno::LOOP) => self.dir.create_fresh(&name)?,
                Err(e) => return Err(with_path(e.into(), &path)),
            };
        match file.try_lock() {
            Ok(()) => Ok(file),
            Err(std::fs::TryLockError::WouldBlock) => Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                format!("another jobdl is writing {} (do two destinations overlap?)", self.dest_path().display()),
            )),
            Err(std::fs::TryLockError::Error(e)) => Err(with_path(e, &path)),
        }
    }

    /// Remove the part file, ignoring "not found".
    pub fn remove_part(&self) -> io::Result<()> {
        self.dir.remove_file(&self.part_name())
    }

    /// Remove the resume record, ignoring "not found".
    pub fn remove_state(&self) -> io::Result<()> {
        self.dir.remove_file(&self.state_name())
    }

    /// Whether a resume record (a regular file) exists.
    pub fn has_state(&self) -> bool {
        matches!(self.dir.open_regular(&self.state_name()), Ok(Some(_)))
    }

    /// Bytes the part file holds on disk (allocated blocks, so a sparse part counts what was
    /// written), when it is there.
    pub fn part_bytes_on_disk(&self) -> Option<u64> {
        let f = self.dir.open_regular(&self.part_name()).ok()??;
        let m = f.metadata().ok()?;
        Some(m.len().min(m.blocks().saturating_mul(512)))
    }

    /// The resume record's bytes (at most `limit`), when it is a regular file.
    pub fn read_state(&self, limit: u64) -> Option<Vec<u8>> {
        let f = self.dir.open_regular(&self.state_name()).ok()??;
        let mut out = Vec::new();
        io::Read::read_to_end(&mut io::Read::take(f, limit), &mut out).ok()?;
        Some(out)
    }

    /// Replace the resume record atomically: write a fresh sibling, fsync it, rename it. The
    /// sibling `.<name>.tmp.jobdl-state` is itself a working-file name, so a crash never leaves a
    /// file the sweep cannot recognise.
    pub fn write_state(&self, bytes: &[u8]) -> io::Result<()> {
        let tmp = working_name(&self.name, &format!(".tmp{STATE_SUFFIX}"));
        let f = self.dir.create_fresh(&tmp)?;
        io::Write::write_all(&mut &f, bytes)?;
        f.sync_data()?;
        self.dir.rename(&tmp, &self.state_name())
    }

    /// The final file, for reading, when it is a regular file (a link is not followed).
    pub fn open_final(&self) -> io::Result<Option<File>> {
        self.dir.open_regular(&self.name)
    }

    /// Rename the part file over the final name (atomic; a link there is replaced).
    pub fn rename_part(&self) -> io::Result<()> {
        self.dir.rename(&self.part_name(), &self.name)
    }

    /// Make the part durable, then rename it over the final name.
    pub fn publish(&self, file: &File) -> io::Result<()> {
        file.sync_data()?;
        self.rename_part()
    }
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

/// Modification time in nanoseconds since the epoch, when the file system says (what a
/// manifest records to tell a file jobdl wrote from one changed since).
pub fn modified_ns(meta: &std::fs::Metadata) -> Option<u64> {
    let d = meta.modified().ok()?.duration_since(std::time::UNIX_EPOCH).ok()?;
    u64::try_from(d.as_nanos()).ok()
}

/// Record `etag` on `file`, with the file's modification time so that a later local edit shows
/// (best effort: a file system without user xattrs keeps none). Call after the last write.
pub fn record_source_etag(file: &File, etag: &str) -> io::Result<()> {
    let value = format!("{etag}\n{}", mtime_ns(&file.metadata()?));
    xattr::set(file, ETAG_XATTR, value.as_bytes())
}

/// The ETag recorded on `file`, if the file is as jobdl left it.
pub fn source_etag(file: &File) -> SourceTag {
    match xattr::get(file, ETAG_XATTR) {
        Ok(Some(v)) => {
            let Ok(text) = String::from_utf8(v) else { return SourceTag::None };
            let Some((etag, mtime)) = text.rsplit_once('\n') else { return SourceTag::None };
            match file.metadata() {
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
    pub fn get(file: &File, name: &str) -> io::Result<Option<Vec<u8>>> {
        use std::os::fd::AsRawFd;
        let n = cname(name)?;
        let mut buf = vec![0u8; 256];
        // SAFETY: valid fd, NUL-terminated name; the buffer outlives the call and its length is passed.
        #[cfg(target_os = "linux")]
        let rc = unsafe { libc::fgetxattr(file.as_raw_fd(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        // SAFETY: as above; macOS adds a position (0) and options (0).
        #[cfg(target_os = "macos")]
        let rc = unsafe { libc::fgetxattr(file.as_raw_fd(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len(), 0, 0) };
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
    pub fn get(_file: &File, _name: &str) -> io::Result<Option<Vec<u8>>> {
        Err(io::ErrorKind::Unsupported.into())
    }
}

/// The cross-process lock on a destination, held for the whole run (OS advisory lock).
#[derive(Debug)]
pub struct DestLock {
    file: File,
    meta: Dir,
    name: std::ffi::OsString,
}

impl DestLock {
    /// Create `<root>/.jobdl/lock` and take an exclusive lock without waiting.
    ///
    /// `.jobdl` and `lock` are jobdl's own names: a symlink planted at either is removed, never
    /// followed. A holder removes the lock file when it is done ([`DestLock::release`]); a process
    /// that locked the old, unlinked file then sees that the name no longer holds what it locked
    /// and tries again, so two processes never both hold "the" lock.
    pub fn acquire(root: &Dir) -> io::Result<DestLock> {
        DestLock::acquire_named(root, "lock")
    }

    /// [`DestLock::acquire`] on `<root>/.jobdl/<name>`: each `--shard` of a shared destination
    /// holds its own lock (`lock-shard-K-of-N`), so the N nodes write side by side.
    pub fn acquire_named(root: &Dir, name: &str) -> io::Result<DestLock> {
        let meta_name = OsStr::new(META_DIR);
        let lock_name = OsStr::new(name);
        for _ in 0..16 {
            let meta = match root.create_dir_all(&root.path.join(META_DIR)) {
                Ok(d) => d,
                Err(_) if is_symlink(root, meta_name) => {
                    root.remove_file(meta_name)?;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let flags = OFlags::RDWR | OFlags::CREATE | OFlags::NONBLOCK | base_flags();
            let file = match rfs::openat(&*meta.fd, lock_name, flags, Mode::from_raw_mode(0o666)) {
                Ok(fd) => File::from(fd),
                Err(Errno::LOOP) => {
                    meta.remove_file(lock_name)?;
                    continue;
                }
                Err(e) => return Err(with_path(e.into(), &meta.path.join(name))),
            };
            let held = file.metadata()?;
            if !held.is_file() {
                return Err(io::Error::other(format!("{} is not a regular file", meta.path.join(name).display())));
            }
            match file.try_lock() {
                Ok(()) => {}
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(io::Error::new(
                        io::ErrorKind::WouldBlock,
                        format!("another jobdl is already writing to {}", root.path.display()),
                    ));
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(e),
            }
            match rfs::statat(&*meta.fd, lock_name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(now) if now.st_ino == held.ino() && now.st_dev == held.dev() => {
                    return Ok(DestLock { file, meta, name: lock_name.to_os_string() });
                }
                _ => continue, // the holder removed it as we opened it: take the new one
            }
        }
        Err(io::Error::other(format!("cannot take the lock {}", root.path.join(META_DIR).join(name).display())))
    }

    /// The destination's `.jobdl/` directory (held open; never reached through a link), where
    /// the manifest lives.
    pub fn meta_dir(&self) -> &Dir {
        &self.meta
    }

    /// Remove the lock file (and `.jobdl/` when empty) while still holding the lock, then
    /// release it: after a run the destination holds only the payload.
    pub fn release(self) {
        let _ = self.meta.remove_file(&self.name);
        if let Some(parent) = self.meta.path.parent()
            && let Ok(root) = Dir::open_root(parent)
        {
            let _ = root.remove_dir(OsStr::new(META_DIR));
        }
        drop(self.file);
    }
}

/// The destination's existing `.jobdl/` directory, for reading (`None` when there is none; a
/// link there is refused).
pub fn meta_dir(root: &Dir) -> io::Result<Option<Dir>> {
    match root.child(OsStr::new(META_DIR)) {
        Ok(d) => Ok(Some(d)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Whether `name` in `dir` is a symlink (not followed).
fn is_symlink(dir: &Dir, name: &OsStr) -> bool {
    rfs::statat(&*dir.fd, name, AtFlags::SYMLINK_NOFOLLOW)
        .is_ok_and(|st| rfs::FileType::from_raw_mode(st.st_mode) == rfs::FileType::Symlink)
}

/// Delete jobdl working files under `root` whose final path is not in `keep`. Returns the count.
/// Only exact working-file names are touched; the walk opens each directory from its parent's
/// descriptor without following links, so a directory swapped for a link is never entered.
pub fn sweep_orphans(root: &Dir, keep: &HashSet<PathBuf>) -> io::Result<usize> {
    use std::os::unix::ffi::OsStrExt;
    let mut removed = 0;
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        let entries = rfs::Dir::read_from(&*dir.fd).map_err(|e| with_path(e.into(), &dir.path))?;
        let mut subdirs = Vec::new();
        let mut working = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| with_path(e.into(), &dir.path))?;
            let name = OsStr::from_bytes(entry.file_name().to_bytes()).to_os_string();
            if name == "." || name == ".." {
                continue;
            }
            let mut ft = entry.file_type();
            if ft == rfs::FileType::Unknown {
                ft = match rfs::statat(&*dir.fd, &*name, AtFlags::SYMLINK_NOFOLLOW) {
                    Ok(st) => rfs::FileType::from_raw_mode(st.st_mode),
                    Err(_) => continue,
                };
            }
            if ft == rfs::FileType::Directory {
                if !(dir.path == root.path && name == META_DIR) {
                    subdirs.push(name);
                }
            } else if ft == rfs::FileType::RegularFile && is_working_file(&name.to_string_lossy()) {
                working.push(name);
            }
        }
        for name in working {
            let text = name.to_string_lossy();
            let suffix = if text.ends_with(PART_SUFFIX) { PART_SUFFIX } else { STATE_SUFFIX };
            let final_name = &text[1..text.len() - suffix.len()];
            if !keep.contains(&dir.path.join(final_name)) {
                dir.remove_file(&name)?;
                removed += 1;
            }
        }
        for name in subdirs {
            match dir.child(&name) {
                Ok(d) => stack.push(d),
                Err(e) => crate::log::log(2, format!("sweep: {e}")),
            }
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(p: &Path) -> File {
        File::open(p).unwrap()
    }

    #[test]
    fn source_etag_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = File::create(&path).unwrap();
        let before = source_etag(&file);
        match record_source_etag(&file, "\"0x8DE1\"") {
            Ok(()) => {
                assert_eq!(before, SourceTag::None);
                assert_eq!(source_etag(&open(&path)), SourceTag::Etag("\"0x8DE1\"".into()));
                // Kept across the rename that publishes a part file.
                let moved = dir.path().join("g");
                std::fs::rename(&path, &moved).unwrap();
                assert_eq!(source_etag(&open(&moved)), SourceTag::Etag("\"0x8DE1\"".into()));
                // A later write moves the mtime: the record no longer vouches for the bytes.
                std::thread::sleep(std::time::Duration::from_millis(20));
                std::fs::write(&moved, b"edited").unwrap();
                assert_eq!(source_etag(&open(&moved)), SourceTag::Modified);
            }
            Err(e) => {
                assert!(xattr::unsupported(&e), "{e}");
                assert_eq!(source_etag(&file), SourceTag::Unsupported);
            }
        }
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
        let root_path = t.path();
        let root = Dir::open_root(root_path).unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), root_path.join("link")).unwrap();
        std::fs::write(root_path.join("file"), b"x").unwrap();
        let mut created = Vec::new();
        assert!(root.create_subdir(&root_path.join("a/b"), &mut created).is_ok());
        assert_eq!(created, [root_path.join("a"), root_path.join("a/b")]);
        assert!(root.create_dir_all(&root_path.join("link/b")).is_err());
        assert!(root.create_dir_all(&root_path.join("file/b")).is_err());
        assert!(root.create_dir_all(&root_path.join("a/../../x")).is_err());
        assert!(root.create_dir_all(Path::new("/elsewhere")).is_err());
        assert!(!outside.path().join("b").exists());
    }

    #[test]
    fn a_directory_swapped_for_a_link_after_it_was_opened_is_not_followed() {
        let t = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let root = Dir::open_root(t.path()).unwrap();
        let sub = t.path().join("sub");
        let place = root.create_dir_all(&sub).and_then(|_| root.place(&sub.join("f"))).unwrap();
        // The held directory is the one that was proven: swapping the name changes nothing...
        std::fs::rename(&sub, t.path().join("moved")).unwrap();
        std::os::unix::fs::symlink(outside.path(), &sub).unwrap();
        let f = place.open_part().unwrap();
        std::io::Write::write_all(&mut &f, b"x").unwrap();
        place.publish(&f).unwrap();
        assert!(t.path().join("moved/f").exists());
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
        // ...and a fresh lookup through the link is refused.
        assert!(root.place(&sub.join("g")).is_err());
    }

    #[test]
    fn planted_part_links_fifos_and_hard_links_are_replaced_not_followed() {
        let t = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let victim = outside.path().join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        let root = Dir::open_root(t.path()).unwrap();
        for plant in ["symlink", "dangling", "hardlink", "fifo"] {
            let dest = t.path().join(plant);
            let part = part_path(&dest);
            match plant {
                "symlink" => std::os::unix::fs::symlink(&victim, &part).unwrap(),
                "dangling" => std::os::unix::fs::symlink(outside.path().join("new"), &part).unwrap(),
                "hardlink" => std::fs::hard_link(&victim, &part).unwrap(),
                _ => {
                    let c = std::ffi::CString::new(part.to_str().unwrap()).unwrap();
                    // SAFETY: a NUL-terminated path.
                    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
                }
            }
            let place = root.place(&dest).unwrap();
            let f = place.open_part().unwrap();
            f.set_len(0).unwrap();
            std::io::Write::write_all(&mut &f, b"server bytes").unwrap();
            place.publish(&f).unwrap();
            assert_eq!(std::fs::read(&dest).unwrap(), b"server bytes", "{plant}");
        }
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        assert!(!outside.path().join("new").exists());
    }

    #[test]
    fn a_part_file_is_held_by_one_run_at_a_time() {
        let t = tempfile::tempdir().unwrap();
        let root = Dir::open_root(t.path()).unwrap();
        let place = root.place(&t.path().join("f")).unwrap();
        let held = place.open_part().unwrap();
        let e = place.open_part().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock, "{e}");
        drop(held);
        assert!(place.open_part().is_ok());
    }

    #[test]
    fn state_records_never_go_through_a_link() {
        let t = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let victim = outside.path().join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        let root = Dir::open_root(t.path()).unwrap();
        let dest = t.path().join("f");
        let place = root.place(&dest).unwrap();
        std::os::unix::fs::symlink(&victim, state_path(&dest)).unwrap();
        std::os::unix::fs::symlink(&victim, t.path().join(".f.tmp.jobdl-state")).unwrap();
        assert_eq!(place.read_state(1 << 20), None);
        place.write_state(b"{}").unwrap();
        assert_eq!(place.read_state(1 << 20).unwrap(), b"{}");
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    }

    #[test]
    fn lock_is_exclusive() {
        let t = tempfile::tempdir().unwrap();
        let root = Dir::open_root(t.path()).unwrap();
        let a = DestLock::acquire(&root).unwrap();
        assert!(DestLock::acquire(&root).is_err());
        drop(a);
        let b = DestLock::acquire(&root).unwrap();
        // A process that opened the file before the holder removed it must not count as holding it.
        let stale = File::open(t.path().join(".jobdl/lock")).unwrap();
        b.release();
        assert!(!t.path().join(".jobdl").exists());
        assert!(stale.try_lock().is_ok(), "the unlinked file can be locked...");
        let c = DestLock::acquire(&root).unwrap();
        assert!(DestLock::acquire(&root).is_err(), "...but the path names a new, held lock");
        drop(c);
    }

    #[test]
    fn planted_lock_links_create_nothing_outside() {
        let t = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let root = Dir::open_root(t.path()).unwrap();
        // `.jobdl` itself a link to a directory elsewhere.
        std::os::unix::fs::symlink(outside.path(), t.path().join(META_DIR)).unwrap();
        DestLock::acquire(&root).unwrap().release();
        // `.jobdl/lock` a dangling link to a file elsewhere.
        std::fs::create_dir(t.path().join(META_DIR)).unwrap();
        std::os::unix::fs::symlink(outside.path().join("made"), t.path().join(".jobdl/lock")).unwrap();
        DestLock::acquire(&root).unwrap().release();
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
        assert!(!t.path().join(META_DIR).exists());
    }

    #[test]
    fn sweep_keeps_planned_and_foreign_files() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        for n in [".a.jobdl-part", ".a.jobdl-state", ".b.jobdl-part", "c.tmp", "d.jobdl-part"] {
            std::fs::write(r.join(n), b"x").unwrap();
        }
        // Working files behind a link to a directory elsewhere are not the sweep's.
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join(".z.jobdl-part"), b"x").unwrap();
        std::os::unix::fs::symlink(outside.path(), r.join("link")).unwrap();
        let keep: HashSet<PathBuf> = [r.join("a")].into_iter().collect();
        assert_eq!(sweep_orphans(&Dir::open_root(r).unwrap(), &keep).unwrap(), 1);
        assert!(r.join(".a.jobdl-part").exists() && r.join("c.tmp").exists() && r.join("d.jobdl-part").exists());
        assert!(!r.join(".b.jobdl-part").exists());
        assert!(outside.path().join(".z.jobdl-part").exists());
    }
}
