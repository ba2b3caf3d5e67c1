//! Opening and creating the files the disk tier shares between processes: the L3 file and
//! the write log. Each is created complete (sized, its first blocks reserved, header written)
//! under a temporary name and hard-linked into place, so no process ever sees a half-written
//! header.

use crate::error::{Error, Result};
use std::fs::{self, File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
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

/// Opens `<dir>/<name>` read-write, creating `dir` (mode 0700) and the file (mode 0600) if
/// missing. A new file gets `layout()`'s size and reserved ranges, and the header bytes at
/// offset 0. Refuses anything that is not a regular file; checking the header is the caller's.
pub(crate) fn open_or_create(
    dir: &Path,
    name: &str,
    layout: impl FnOnce() -> Result<NewFile>,
) -> Result<(File, PathBuf)> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| io_err(dir, "cannot create the cache directory", e))?;
    let path = dir.join(name);
    let file = match OpenOptions::new().read(true).write(true).open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => create(dir, name, &layout()?)?,
        Err(e) => return Err(io_err(&path, "cannot open", e)),
    };
    let meta = file
        .metadata()
        .map_err(|e| io_err(&path, "cannot stat", e))?;
    if !meta.is_file() {
        return Err(io_err(&path, "refusing to use", "not a regular file"));
    }
    Ok((file, path))
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
/// If another process links its file first, we use theirs.
fn create(dir: &Path, name: &str, layout: &NewFile) -> Result<File> {
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
    result?;
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| io_err(&path, "cannot open", e))
}
