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

#[test]
fn a_symlinked_directory_is_refused_however_its_path_ends() {
    let real = TempDir::new("owner-trailing-real");
    let links = TempDir::new("owner-trailing-links");
    let link = links.path().join("dir-link");
    std::os::unix::fs::symlink(real.path(), &link).unwrap();
    let l = link.to_str().unwrap();
    // A trailing "/" or "." makes the kernel follow the link despite O_NOFOLLOW.
    for spelling in [
        format!("{l}/"),
        format!("{l}/."),
        format!("{l}//"),
        format!("{l}/./"),
    ] {
        assert_refused(Path::new(&spelling), &link, &["symbolic link"]);
    }
    assert!(
        std::fs::read_dir(real.path()).unwrap().next().is_none(),
        "nothing was created through the link"
    );
}

/// Env var naming the directory [`open_as_another_user`] opens a cache on.
const PROBE_DIR: &str = "SMARTCACHE_OWNERSHIP_PROBE_DIR";

/// Not a check on its own (ignored in normal runs): the child half of
/// [`open_as_another_user`], run under setpriv as the other user. Prints open's error.
#[test]
#[ignore]
fn child_prints_why_opening_the_probe_dir_fails() {
    let Some(dir) = std::env::var_os(PROBE_DIR) else {
        return;
    };
    match Cache::open(disk_config(Path::new(&dir))) {
        Ok(_) => println!("PROBE-OPENED"),
        Err(e) => println!("PROBE-ERROR {} {e}", e.code()),
    }
}

/// Opens a cache on `dir` as uid OTHER_UID in a child process (this test binary again, under
/// setpriv); returns the child's "PROBE-..." line, None when not root.
fn open_as_another_user(dir: &Path) -> Option<String> {
    if euid() != 0 {
        eprintln!("skipped: playing a second user with setpriv needs root");
        return None;
    }
    let out = Command::new("setpriv")
        .args([
            "--reuid",
            &OTHER_UID.to_string(),
            "--regid",
            &OTHER_UID.to_string(),
            "--clear-groups",
        ])
        .arg(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "child_prints_why_opening_the_probe_dir_fails",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(PROBE_DIR, dir)
        .output()
        .expect("setpriv runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    // The harness prints "test <name> ... " on the same line before the child's output.
    let line = stdout
        .lines()
        .find_map(|l| l.find("PROBE-").map(|at| &l[at..]));
    Some(
        line.unwrap_or_else(|| {
            panic!(
                "no probe line: {stdout} {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
        .to_string(),
    )
}

#[test]
fn permission_denied_names_the_owner_and_mode_of_what_was_refused() {
    // Another user's (here root's) private directory.
    let theirs = TempDir::new("owner-eacces-dir");
    std::fs::set_permissions(theirs.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let Some(line) = open_as_another_user(theirs.path()) else {
        return;
    };
    let io = smartcache::error::status::SZ_ERR_IO;
    for needle in [
        format!("PROBE-ERROR {io} "),
        theirs.path().display().to_string(),
        "ermission denied".to_string(),
        format!("owned by uid {}, mode 0700", euid()),
    ] {
        assert!(line.contains(&needle), "'{needle}' missing from: {line}");
    }

    // The other user's own directory holding a file of ours (root's) it cannot open.
    let shared = TempDir::new("owner-eacces-file");
    Cache::open(disk_config(shared.path())).unwrap();
    std::fs::set_permissions(shared.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::chown(shared.path(), Some(OTHER_UID), Some(OTHER_UID)).unwrap();
    let line = open_as_another_user(shared.path()).unwrap();
    for needle in [
        format!("PROBE-ERROR {io} "),
        shared.file().display().to_string(),
        format!("owned by uid {}, mode 0600", euid()),
    ] {
        assert!(line.contains(&needle), "'{needle}' missing from: {line}");
    }
}
