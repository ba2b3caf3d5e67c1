//! The Redis key prefix derived when `redis_key_prefix` is unset:
//! `"sc:" + hex(first 16 bytes of SHA-256(canonical disk_path)) + ":"`.
//!
//! The disk_path names the cache (its workers share it, see the module docs of the tier), but
//! it cannot go into the prefix as text: `/x` would give `sc:/x:` and `/x:y` would give
//! `sc:/x:y:`, so the first cache's keys `y:k` would be the second's `k`, and one cache's
//! `clear` (`SCAN MATCH sc:/x:*`) would delete the other's entries. A fixed-length hash has no
//! such overlaps. 128 bits keep accidental collisions out of reach.
//!
//! The path is canonicalized first so that spellings of one directory (`/srv/app/`,
//! `/srv//app`, `/srv/./app`, a symlink to it, a relative path) name one cache: symlinks are
//! resolved as far as the path exists; the part that does not exist yet is normalised
//! lexically (`.` dropped, `..` removing the previous component).

use sha2::{Digest, Sha256};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// How many bytes of the digest the prefix keeps (as 32 hex digits).
const DIGEST_BYTES: usize = 16;

/// The derived prefix for a cache whose disk_path is `disk_path`.
pub fn derived_prefix(disk_path: &Path) -> String {
    let canonical = canonical_path(disk_path);
    let digest = Sha256::digest(canonical.as_os_str().as_bytes());
    let mut out = String::with_capacity(3 + 2 * DIGEST_BYTES + 1);
    out.push_str("sc:");
    for b in &digest[..DIGEST_BYTES] {
        out.push_str(&format!("{b:02x}"));
    }
    out.push(':');
    out
}

/// `path` made absolute, its existing part with symlinks resolved, the rest normalised.
pub fn canonical_path(path: &Path) -> PathBuf {
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .unwrap_or_else(|_| PathBuf::from("/"))
            .join(path)
    };
    let lexical = normalise(&absolute);
    // The longest existing ancestor is resolved by the kernel; what lies below it is appended.
    let mut existing = lexical.as_path();
    let mut rest: Vec<&OsStr> = Vec::new();
    loop {
        if let Ok(resolved) = std::fs::canonicalize(existing) {
            return rest.iter().rev().fold(resolved, |p, c| p.join(c));
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name);
                existing = parent;
            }
            _ => return lexical,
        }
    }
}

/// Drops `.` and empty components and applies `..`, without touching the filesystem.
fn normalise(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_is_fixed_length_hex_between_sc_and_colon() {
        let p = derived_prefix(Path::new("/var/cache/app"));
        assert!(p.starts_with("sc:") && p.ends_with(':'), "{p}");
        assert_eq!(p.len(), 3 + 32 + 1);
        assert!(p[3..35].bytes().all(|b| b.is_ascii_hexdigit()), "{p}");
    }

    #[test]
    fn spellings_of_one_directory_share_a_prefix() {
        let base = std::env::temp_dir().join(format!("sc-prefix-{}", std::process::id()));
        std::fs::create_dir_all(base.join("real")).unwrap();
        let link = base.join("link");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(base.join("real"), &link).unwrap();
        let want = derived_prefix(&base.join("real/app"));
        for spelling in [
            base.join("real/app/"),
            base.join("real/./app"),
            base.join("real/x/../app"),
            link.join("app"),
        ] {
            assert_eq!(derived_prefix(&spelling), want, "{}", spelling.display());
        }
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn a_path_and_its_extension_by_a_colon_do_not_overlap() {
        let (a, b) = (
            derived_prefix(Path::new("/x")),
            derived_prefix(Path::new("/x:y")),
        );
        assert!(!a.starts_with(&b) && !b.starts_with(&a), "{a} {b}");
    }
}
