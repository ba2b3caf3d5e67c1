//! Opening and creating the files the disk tier shares between processes: the L3 file and
//! the write log. Each is created complete (sized, its first blocks reserved, header written)
//! under a temporary name and hard-linked into place, so no process ever sees a half-written
//! header.
//!
//! The directory and both files are trusted only when they belong to this user (see
//! [`open_owned_dir`] and [`open_owned`]): whoever can write to them can make us read values
//! they chose (code, for a pickle-using binding) or read ours.

use crate::error::{Error, Result};
use std::ffi::CString;
use std::fs::{self, File, Metadata, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt};
use std::os::unix::io::{AsRawFd, FromRawFd};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

pub(crate) fn io_err(path: &Path, what: &str, e: impl std::fmt::Display) -> Error {
    Error::io(format!("{}: {what}: {e}", path.display()))
}

/// How a new file is laid out: its size, the byte ranges whose blocks are reserved at creation
/// (the rest stays a hole until the owner reserves it, see `disk::grow`), and its header.
pub(crate) struct NewFile {
    pub size: u64,
    /// (offset, length) ranges reserved with fallocate before the file is linked into place.
    pub reserved: Vec<(u64, u64)>,
    pub header: Vec<u8>,
}

/// Opens `<dir>/<name>` read-write, creating `dir` (and missing parents, mode 0700) and the
/// file (mode 0600) if missing. A new file gets `layout()`'s size and reserved ranges, and the
/// header bytes at offset 0. The directory and the file must be ours (see [`open_owned_dir`],
/// [`open_owned`]); checking the header is the caller's.
pub(crate) fn open_or_create(
    dir: &Path,
    name: &str,
    layout: impl FnOnce() -> Result<NewFile>,
) -> Result<(File, PathBuf)> {
    let dir_fd = open_owned_dir(dir)?;
    let path = dir.join(name);
    let file = match open_owned(&dir_fd, dir, name)? {
        Some(f) => f,
        None => {
            create(dir, name, &layout()?)?;
            open_owned(&dir_fd, dir, name)?
                .ok_or_else(|| io_err(&path, "cannot open", "it vanished after creation"))?
        }
    };
    Ok((file, path))
}

/// Why a directory or file we did not make safe for ourselves is refused: `None` when `meta`
/// (from fstat on the opened descriptor) belongs to the effective uid and is not writable by
/// group or others.
fn foreign(meta: &Metadata) -> Option<String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    let mode = meta.mode() & 0o7777;
    if meta.uid() != euid {
        Some(format!(
            "owned by uid {}, mode {mode:04o}; it must belong to uid {euid}, which this process \
             runs as",
            meta.uid()
        ))
    } else if mode & 0o022 != 0 {
        Some(format!(
            "owned by uid {}, mode {mode:04o}; it must not be writable by group or others \
             (chmod go-w)",
            meta.uid()
        ))
    } else {
        None
    }
}

/// Opens the cache directory itself (creating it, and missing parents, with mode 0700), never
/// through a symlink at its last component, and checks that it is ours: a directory someone
/// else owns or can write to lets them plant or swap our files.
pub(crate) fn open_owned_dir(dir: &Path) -> Result<File> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| io_err(dir, "cannot create the cache directory", e))?;
    let d = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
        .open(dir)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) | Some(libc::ENOTDIR) => io_err(
                dir,
                "refusing to use",
                "it is a symbolic link or not a directory (give the real directory's path)",
            ),
            _ => io_err(dir, "cannot open the cache directory", e),
        })?;
    let meta = d.metadata().map_err(|e| io_err(dir, "cannot stat", e))?;
    match foreign(&meta) {
        Some(why) => Err(io_err(dir, "refusing to use the cache directory", why)),
        None => Ok(d),
    }
}

/// Opens `name` in the checked directory `dir_fd` read-write, refusing a symlink (O_NOFOLLOW),
/// anything but a regular file, and a file not ours (see [`foreign`]). `None` when it does not
/// exist.
pub(crate) fn open_owned(dir_fd: &File, dir: &Path, name: &str) -> Result<Option<File>> {
    let path = dir.join(name);
    let c_name =
        CString::new(name).map_err(|_| io_err(&path, "cannot open", "NUL in file name"))?;
    // SAFETY: dir_fd is an open directory descriptor kept alive by the borrow; c_name is a
    // NUL-terminated string outliving the call. The returned descriptor, if any, is owned
    // solely by the File made from it below.
    let fd = unsafe {
        libc::openat(
            dir_fd.as_raw_fd(),
            c_name.as_ptr(),
            libc::O_RDWR | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        let e = std::io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ENOENT) => Ok(None),
            Some(libc::ELOOP) => Err(io_err(&path, "refusing to use", "it is a symbolic link")),
            _ => Err(io_err(&path, "cannot open", e)),
        };
    }
    // SAFETY: fd is a fresh descriptor that nothing else owns.
    let file = unsafe { File::from_raw_fd(fd) };
    let meta = file
        .metadata()
        .map_err(|e| io_err(&path, "cannot stat", e))?;
    if !meta.is_file() {
        return Err(io_err(&path, "refusing to use", "not a regular file"));
    }
    match foreign(&meta) {
        Some(why) => Err(io_err(&path, "refusing to use", why)),
        None => Ok(Some(file)),
    }
}

/// Reads up to buf.len() bytes from the start of the file; returns how many there were.
pub(crate) fn read_prefix(file: &File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match file.read_at(&mut buf[got..], got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Sizes the file to at least `size` and reserves all its blocks (see `reserve_range`).
pub(crate) fn reserve(file: &File, size: u64) -> std::io::Result<()> {
    reserve_range(file, 0, size)
}

/// Reserves the blocks of bytes `off .. off + len`, extending the file if it is shorter. A
/// store through a shared mapping into a hole of a sparse file needs a block at page-fault
/// time, and a full disk then kills the process with SIGBUS; reserving before the first store
/// turns "disk full" into an error of the call that reserves. Reserving blocks that are already
/// there changes nothing. Filesystems without fallocate keep a sparse file (that risk remains
/// there).
pub(crate) fn reserve_range(file: &File, off: u64, len: u64) -> std::io::Result<()> {
    let too_big = || std::io::Error::new(ErrorKind::InvalidInput, "file size overflows off_t");
    let end = off.checked_add(len).ok_or_else(too_big)?;
    let (c_off, c_len) = (
        libc::off_t::try_from(off).map_err(|_| too_big())?,
        libc::off_t::try_from(len).map_err(|_| too_big())?,
    );
    if len == 0 {
        return Ok(());
    }
    loop {
        // SAFETY: fallocate only reads its integer arguments; the descriptor stays open for the
        // call. Mode 0 allocates blocks and extends the size, never discarding data.
        let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, c_off, c_len) };
        if rc == 0 {
            return Ok(());
        }
        let err = std::io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EOPNOTSUPP) => {
                if file.metadata()?.len() < end {
                    file.set_len(end)?;
                }
                return Ok(());
            }
            _ => return Err(err),
        }
    }
}

/// The prefix of `<name>`'s temporary files: `.<name>.tmp.<pid>.<nanos>`.
pub(crate) fn temp_prefix(name: &str) -> String {
    format!(".{name}.tmp.")
}

/// A process killed while creating the file leaves its temporary file behind (sized like the
/// file, its blocks reserved). Removes those whose creator is gone; a live creator's, or one
/// whose pid was reused, is left alone.
fn remove_orphaned_temp_files(dir: &Path, name: &str) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let prefix = temp_prefix(name);
    for e in entries.flatten() {
        let file_name = e.file_name();
        let Some(rest) = file_name
            .to_str()
            .and_then(|n| n.strip_prefix(prefix.as_str()))
        else {
            continue;
        };
        let Some(pid) = rest
            .split('.')
            .next()
            .and_then(|p| p.parse::<libc::pid_t>().ok())
        else {
            continue;
        };
        if pid <= 0 || pid as u32 == std::process::id() {
            continue;
        }
        // SAFETY: kill with signal 0 sends nothing; it only asks whether the pid exists.
        let gone = unsafe { libc::kill(pid, 0) } != 0
            && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
        if gone {
            let _ = fs::remove_file(e.path());
        }
    }
}

/// Creates `<dir>/<name>` complete under a temporary name, then links it into place, so no
/// process ever sees a half-initialised header (which it would refuse as not ours, forever).
/// If another process links its file first, we use theirs. The caller opens the result.
fn create(dir: &Path, name: &str, layout: &NewFile) -> Result<()> {
    remove_orphaned_temp_files(dir, name);
    let path = dir.join(name);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let tmp = dir.join(format!(
        "{}{}.{nanos}",
        temp_prefix(name),
        std::process::id()
    ));
    let result = (|| {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| io_err(&tmp, "cannot create", e))?;
        f.set_len(layout.size)
            .map_err(|e| io_err(&tmp, &format!("cannot size to {} bytes", layout.size), e))?;
        for &(off, len) in &layout.reserved {
            reserve_range(&f, off, len)
                .map_err(|e| io_err(&tmp, &format!("cannot reserve {len} bytes"), e))?;
        }
        f.write_all_at(&layout.header, 0)
            .map_err(|e| io_err(&tmp, "cannot write the header", e))?;
        f.sync_all().map_err(|e| io_err(&tmp, "cannot sync", e))?;
        match fs::hard_link(&tmp, &path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(io_err(&path, "cannot create", e)),
        }
    })();
    let _ = fs::remove_file(&tmp);
    result
}
