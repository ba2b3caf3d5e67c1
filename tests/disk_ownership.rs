//! The disk directory and its files are used only when they belong to this process's effective
//! uid and no one else can write to them; symlinks at their names are refused. Another user is
//! played by uid 65534 through `setpriv` (needs root: those cases are skipped, saying so, when
//! the tests do not run as root).

mod common;

use common::TempDir;
use smartcache::{Cache, Config};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

const OTHER_UID: u32 = 65534;

fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

fn disk_config(path: &Path) -> Config {
    Config {
        disk_enabled: true,
        disk_path: path.to_path_buf(),
        disk_max_size: 1 << 20,
        auto_expire_interval: 0,
        ..Config::default()
    }
}

/// Opening a cache on `dir` fails with SZ_ERR_IO and a message naming `path` (the directory
/// or the file refused) and every `needle`.
fn assert_refused(dir: &Path, path: &Path, needles: &[&str]) {
    let e = Cache::open(disk_config(dir)).err().expect("open must fail");
    assert_eq!(e.code(), smartcache::error::status::SZ_ERR_IO, "{e}");
    let msg = e.to_string();
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    for n in needles {
        assert!(msg.contains(n), "'{n}' missing from: {msg}");
    }
}

/// Runs `args` as uid/gid OTHER_UID; false (with a message) when not root.
fn as_other_user(args: &[&str]) -> bool {
    if euid() != 0 {
        eprintln!("skipped: playing a second user with setpriv needs root");
        return false;
    }
    let st = Command::new("setpriv")
        .args([
            "--reuid",
            &OTHER_UID.to_string(),
            "--regid",
            &OTHER_UID.to_string(),
        ])
        .arg("--clear-groups")
        .args(args)
        .status()
        .expect("setpriv runs");
    assert!(st.success(), "setpriv {args:?}: {st}");
    true
}

/// A fresh name directly in the world-writable temp dir, where another user can create it.
fn shared_tmp_name(what: &str) -> PathBuf {
    std::env::temp_dir().join(format!("smartcache-owner-{what}-{}", std::process::id()))
}

#[test]
fn a_directory_pre_created_by_another_user_is_refused() {
    let dir = shared_tmp_name("squatted");
    let d = dir.to_str().unwrap();
    if !as_other_user(&["mkdir", "-m", "0700", d]) {
        return;
    }
    assert_refused(
        &dir,
        &dir,
        &[&format!("owned by uid {OTHER_UID}"), "mode 0700"],
    );
    // Even one it left open to us: planting is what it is for.
    as_other_user(&["chmod", "0777", d]);
    assert_refused(
        &dir,
        &dir,
        &[&format!("owned by uid {OTHER_UID}"), "mode 0777"],
    );
    assert!(
        std::fs::read_dir(&dir).unwrap().next().is_none(),
        "nothing was created in it"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_file_owned_by_another_user_is_refused() {
    let dir = TempDir::new("owner-file");
    Cache::open(disk_config(dir.path())).unwrap();
    let l3 = dir.file();
    if euid() != 0 {
        eprintln!("skipped: giving a file to a second user needs root");
        return;
    }
    // The other user's own file, moved into our directory (as a directory once shared would
    // have left it).
    let theirs = shared_tmp_name("their-file");
    std::fs::copy(&l3, &theirs).unwrap();
    std::fs::remove_file(&l3).unwrap();
    std::os::unix::fs::chown(&theirs, Some(OTHER_UID), Some(OTHER_UID)).unwrap();
    std::fs::rename(&theirs, &l3).unwrap();
    assert_eq!(std::fs::metadata(&l3).unwrap().uid(), OTHER_UID);
    assert_refused(dir.path(), &l3, &[&format!("owned by uid {OTHER_UID}")]);
}

#[test]
fn a_group_or_world_writable_directory_is_refused() {
    for mode in [0o777, 0o770, 0o702] {
        let dir = TempDir::new("owner-writable");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(mode)).unwrap();
        assert_refused(
            dir.path(),
            dir.path(),
            &[
                &format!("mode {mode:04o}"),
                &format!("owned by uid {}", euid()),
            ],
        );
    }
}

#[test]
fn a_group_or_world_writable_file_is_refused() {
    let dir = TempDir::new("owner-writable-file");
    Cache::open(disk_config(dir.path())).unwrap();
    std::fs::set_permissions(dir.file(), std::fs::Permissions::from_mode(0o666)).unwrap();
    assert_refused(dir.path(), &dir.file(), &["mode 0666"]);
}

#[test]
fn symlinks_at_the_file_names_or_the_directory_are_refused() {
    // The cache file's name pointing at a file of ours elsewhere.
    let dir = TempDir::new("owner-link-l3");
    let elsewhere = TempDir::new("owner-link-target");
    Cache::open(disk_config(elsewhere.path())).unwrap();
    std::os::unix::fs::symlink(elsewhere.file(), dir.file()).unwrap();
    assert_refused(dir.path(), &dir.file(), &["symbolic link"]);

    // The write log's name, dangling (open would otherwise create the file it points to).
    let dir = TempDir::new("owner-link-writes");
    Cache::open(disk_config(dir.path())).unwrap();
    let writes = dir.path().join("smartcache.writes");
    std::fs::remove_file(&writes).unwrap();
    let target = elsewhere.path().join("planted");
    std::os::unix::fs::symlink(&target, &writes).unwrap();
    assert_refused(dir.path(), &writes, &["symbolic link"]);
    assert!(!target.exists(), "nothing created through the link");

    // disk_path itself a symlink to a directory of ours.
    let link = elsewhere.path().join("dir-link");
    std::os::unix::fs::symlink(dir.path(), &link).unwrap();
    assert_refused(&link, &link, &["symbolic link"]);
}

#[test]
fn created_directories_are_0700_and_files_0600_and_reopen() {
    let base = TempDir::new("owner-create");
    let dir = base.path().join("a").join("b");
    let cache = Cache::open(disk_config(&dir)).unwrap();
    cache.set(b"k", b"v", None).unwrap();
    drop(cache);
    for d in [base.path().join("a"), dir.clone()] {
        let mode = std::fs::metadata(&d).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o700, "{}: {mode:o}", d.display());
    }
    for f in ["smartcache.l3", "smartcache.writes"] {
        let m = std::fs::metadata(dir.join(f)).unwrap();
        assert_eq!(m.permissions().mode() & 0o7777, 0o600, "{f}");
        assert_eq!(m.uid(), euid(), "{f}");
    }
    let cache = Cache::open(disk_config(&dir)).unwrap();
    assert_eq!(cache.get(b"k").unwrap().unwrap().value(), b"v");
}
