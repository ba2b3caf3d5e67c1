//! Entry points for the coverage-guided fuzz targets in `fuzz/` (not part of the API; hidden
//! from the docs). Each takes arbitrary bytes, feeds them to one parser of untrusted input the
//! way the cache does, and checks what must hold for any input: no panic, no crash, no hang,
//! and what a parser accepts it reads back the same. Internals stay private: the targets call
//! these functions, and these call the same entry points the cache does.

use crate::compress;
use crate::config::{Config, OPTION_NAMES};
use crate::disk::format::{record_crc, Geometry, RecordHeader, HEADER_LEN, RECORD_HEADER};
use crate::redis::cluster::ClusterUrl;
use crate::redis::conn::{Conn, Endpoint, Reply};
use crate::redis::frame::{self, Decoded};
use crate::redis::url::RedisUrl;
use crate::tier::flags;
use crate::tiered::Cache;
use once_cell::sync::Lazy;
use std::io::Write;
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The disk file's header page and one record header, as the disk tier reads them at open and
/// on every lookup.
pub fn disk_header(data: &[u8]) {
    let mut page = data.to_vec();
    page.resize(page.len().max(HEADER_LEN as usize), 0);
    if let Ok(g) = Geometry::decode(&page) {
        assert!(g.file_size >= g.data_off + 2 * g.seg_size, "{g:?}");
        let mut again = vec![0u8; HEADER_LEN as usize];
        g.encode(&mut again);
        assert_eq!(Geometry::decode(&again), Ok(g));
    }
    let _ = Geometry::decode(data);
    let mut rec = [0u8; RECORD_HEADER];
    let n = data.len().min(RECORD_HEADER);
    rec[..n].copy_from_slice(&data[..n]);
    if let Some(h) = RecordHeader::decode(&rec) {
        assert_eq!(RecordHeader::decode(&h.encode()), Some(h));
        let _ = h.record_len();
        let _ = record_crc(&rec, &data[n..], &[]);
    }
}

/// A Redis value (frame header, then a payload that may be an LZ4 frame) as the Redis tier
/// unframes it and the coordinator decompresses it. The first 8 bytes are the clock.
pub fn redis_frame(data: &[u8]) {
    let (now, stored) = match data.get(..8) {
        Some(now) => (
            u64::from_le_bytes(now.try_into().expect("8 bytes")),
            &data[8..],
        ),
        None => (0, data),
    };
    // With a secret the MAC is checked too: a forged frame must be refused, never crash.
    static SIGNER: once_cell::sync::Lazy<crate::sign::Signer> = once_cell::sync::Lazy::new(|| {
        let mut cfg = crate::Config::default();
        cfg.set("value_secret", "fuzzing-secret-0123456789")
            .expect("a valid secret");
        crate::sign::Signer::from_config(&cfg).expect("signing on")
    });
    let signed = frame::decode(stored.to_vec(), now, Some((&SIGNER, b"fuzz:key")));
    assert!(
        !matches!(signed, Ok(Decoded::Live(..))),
        "a forged frame verified"
    );
    if let Ok(Decoded::Live(payload, fl, remaining)) = frame::decode(stored.to_vec(), now, None) {
        let mac = match stored[3] {
            frame::VERSION_SIGNED => crate::sign::MAC_LEN,
            _ => 0,
        };
        assert_eq!(payload.len(), stored.len() - frame::HEADER_LEN - mac);
        assert!(remaining.map_or(true, |r| !r.is_zero()));
        if fl & flags::COMPRESSED != 0 {
            decompress_bounded(&payload);
        }
    }
}

/// The largest value these targets let a compressed frame claim (the cache uses max_value_size).
const FUZZ_VALUE_LIMIT: usize = 1 << 20;

fn decompress_bounded(payload: &[u8]) {
    if let Ok(len) = compress::original_len(payload, FUZZ_VALUE_LIMIT) {
        let mut plain = vec![0u8; len];
        let _ = compress::decompress_into(payload, &mut plain);
    }
}

/// A fake server's listening socket for `redis_replies`, one per process.
struct FakeServer {
    dir: PathBuf,
    listener: UnixListener,
}

static FAKE_SERVER: Lazy<FakeServer> = Lazy::new(|| {
    let dir = scratch_dir("redis");
    let listener = UnixListener::bind(dir.join("redis.sock")).expect("bind the fake server");
    FakeServer { dir, listener }
});

/// What a server sends, read by a real connection (`Conn`, over a Unix socket) exactly as the
/// Redis tier reads it: hiredis's reader with our reply budget, array and line bounds. The
/// first byte picks how many commands are pipelined (1-4), the second the max_value_size the
/// connection is held to; the rest is sent as the server's answer, then the server hangs up.
/// The connection returns one reply per command or an error; what the replies hold came out of
/// the bytes sent.
pub fn redis_replies(data: &[u8]) {
    let (&[commands, size], sent) = data.split_at(data.len().min(2)) else {
        return;
    };
    let server = &*FAKE_SERVER;
    let ep = Endpoint::Unix {
        path: server.dir.join("redis.sock"),
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    let Ok(mut conn) = Conn::connect(&ep, "fuzz".into(), Duration::from_secs(5), deadline) else {
        return;
    };
    let Ok((mut peer, _)) = server.listener.accept() else {
        return;
    };
    conn.set_max_value_size(1 << (size % 24));
    let n = commands as usize % 4 + 1;
    if n > 1 {
        conn.expect_values(n);
    }
    // The answer fits the socket buffer (inputs are a few KiB), so it is all there before the
    // client reads; the hang-up ends a reply that never completes.
    let _ = peer.write_all(sent);
    let _ = peer.shutdown(std::net::Shutdown::Write);
    for i in 0..n {
        let key = format!("key-{i}");
        if conn.append(&[b"GET", key.as_bytes()]).is_err() {
            return;
        }
    }
    if let Ok(replies) = conn.finish(deadline) {
        assert_eq!(replies.len(), n);
        let total: usize = replies.iter().map(reply_bytes).sum();
        assert!(
            total <= sent.len(),
            "{total} bytes of replies from {}",
            sent.len()
        );
    }
}

fn reply_bytes(r: &Reply) -> usize {
    match r {
        // An error's text went through lossy UTF-8 decoding, which may lengthen it.
        Reply::Nil | Reply::Integer(_) | Reply::Error(_) => 0,
        Reply::Status(b) | Reply::Bulk(b) => b.len(),
        Reply::Array(items) => items.iter().map(reply_bytes).sum(),
    }
}

/// `redis_url` text, as `sz_config_set` and the Redis tier parse it.
pub fn redis_url(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if ClusterUrl::is_cluster(text) {
        if let Ok(url) = ClusterUrl::parse(text) {
            let shown = url.to_string();
            if url.password.is_some() {
                assert!(shown.contains("***"), "{shown}");
            }
        }
        return;
    }
    match RedisUrl::parse(text) {
        Ok(url) => {
            let shown = url.to_string();
            if url.password.is_some() {
                assert!(shown.contains("***"), "{shown}");
            }
            let _ = format!("{url:?}");
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
}

/// Lines of `name=value` (a name that is a number picks an option by index), set in order as
/// `sz_config_set` does, then the whole config checked as open checks it. An accepted value
/// reads back (`get`) as text that `set` accepts again and that then reads back the same (text,
/// not config, equality: a secret reads back redacted).
pub fn config_options(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut cfg = Config::default();
    for line in text.split('\n') {
        let (name, value) = line.split_once('=').unwrap_or((line, ""));
        let name = match name.parse::<usize>() {
            Ok(i) => OPTION_NAMES[i % OPTION_NAMES.len()],
            Err(_) => name,
        };
        let before = cfg.clone();
        match cfg.set(name, value) {
            Ok(()) => {
                let shown = cfg.get(name).expect("a set option reads back");
                if let Some(crate::config::Limit::Secret { .. }) = crate::config::limit_of(name) {
                    // A secret reads back as a placeholder, never as itself.
                    let want = if value.is_empty() { "" } else { "***" };
                    assert_eq!(shown, want, "{name} read back as its value");
                    continue;
                }
                let mut again = before;
                again
                    .set(name, &shown)
                    .expect("get's text is accepted by set");
                let shown_again = again.get(name).expect("a set option reads back");
                assert_eq!(
                    shown_again, shown,
                    "{name}={value:?} read back as {shown:?}"
                );
            }
            Err(e) => {
                assert_eq!(cfg, before, "a refused {name} changed the config");
                let _ = e.to_string();
            }
        }
    }
    let _ = cfg.validate();
}

/// Keys the disk template holds (and the target looks up).
const DISK_KEYS: usize = 24;

/// A disk_path with both files written by a real cache: a few plain, compressed and expiring
/// records, one deleted. Built once per process; every input starts from a copy of it.
struct DiskTemplate {
    dir: PathBuf,
    files: Vec<(&'static str, Vec<u8>)>,
}

fn disk_config(dir: &Path) -> Config {
    let mut cfg = Config::default();
    for (k, v) in [
        ("disk_enabled", "true"),
        ("disk_max_size", "64K"),
        ("max_value_size", "4K"),
        ("memory_capacity", "16"),
        ("jemalloc_enabled", "false"),
        ("enable_stats", "false"),
        ("auto_expire_interval", "0"),
        ("compression_min_size", "64"),
    ] {
        cfg.set(k, v).expect("a valid fuzz config");
    }
    cfg.disk_path = dir.to_path_buf();
    cfg
}

fn disk_key(i: usize) -> Vec<u8> {
    format!("key-{i}").into_bytes()
}

static DISK_TEMPLATE: Lazy<DiskTemplate> = Lazy::new(|| {
    let dir = scratch_dir("disk");
    {
        let cache = Cache::open(disk_config(&dir)).expect("open the template cache");
        for i in 0..DISK_KEYS {
            let value = match i % 3 {
                0 => format!("value {i}").into_bytes(),
                1 => "compressible ".repeat(20 + i).into_bytes(),
                _ => (0..200 + i).map(|b| (b * 7 + i) as u8).collect(),
            };
            let ttl = (i % 4 == 0).then(|| Duration::from_secs(3600));
            cache.set(&disk_key(i), &value, ttl).expect("template set");
        }
        cache.delete(&disk_key(5)).expect("template delete");
    }
    let files = [
        crate::disk::FILE_NAME,
        crate::coherence::write_log::FILE_NAME,
    ]
    .into_iter()
    .map(|name| {
        (
            name,
            std::fs::read(dir.join(name)).expect("read the template"),
        )
    })
    .collect();
    DiskTemplate { dir, files }
});

/// A new private directory (mode 0700, as the disk tier requires) for this process's scratch
/// files, on tmpfs when there is one (disk_file rewrites its files for every input). Removed
/// when the process exits.
fn scratch_dir(what: &str) -> PathBuf {
    let base = if Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let dir = base.join(format!("smartcache-fuzz-{what}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .expect("create a scratch directory");
    static REGISTERED: std::sync::Once = std::sync::Once::new();
    // SAFETY: atexit only stores the function pointer; remove_scratch_dirs cannot panic (it
    // ignores every error), so nothing unwinds into libc.
    REGISTERED.call_once(|| unsafe {
        libc::atexit(remove_scratch_dirs);
    });
    dir
}

/// Removes the scratch directories when the fuzzer exits (each run is a new process).
extern "C" fn remove_scratch_dirs() {
    if let Some(t) = Lazy::get(&DISK_TEMPLATE) {
        let _ = std::fs::remove_dir_all(&t.dir);
    }
    if let Some(s) = Lazy::get(&FAKE_SERVER) {
        let _ = std::fs::remove_dir_all(&s.dir);
    }
}

/// Both files of a disk_path, written by a real cache, then damaged as another process (or a
/// disk error) could: `data` is a list of patches `[file u8][offset u32 le][len u8][bytes]`.
/// A cache then opens the directory and gets, sets, deletes and expires keys. Damage must give
/// an error at open, misses and counted corruptions, never a crash, a hang or a wrong value.
pub fn disk_file(data: &[u8]) {
    let t = &*DISK_TEMPLATE;
    let mut files = t.files.clone();
    let mut rest = data;
    while let [which, o0, o1, o2, o3, len, tail @ ..] = rest {
        let (_, bytes) = &mut files[*which as usize % 2];
        let n = (*len as usize).min(tail.len());
        let at = u32::from_le_bytes([*o0, *o1, *o2, *o3]) as usize % bytes.len();
        let end = (at + n).min(bytes.len());
        bytes[at..end].copy_from_slice(&tail[..end - at]);
        rest = &tail[n..];
    }
    for (name, bytes) in &files {
        std::fs::write(t.dir.join(name), bytes).expect("write the damaged file");
    }
    let Ok(cache) = Cache::open(disk_config(&t.dir)) else {
        return;
    };
    for i in 0..DISK_KEYS {
        let key = disk_key(i);
        // Without a value secret the checksum guards against damage, not forgery, so any
        // record that checks out may come back; but never one over max_value_size.
        if let Ok(Some(v)) = cache.get(&key) {
            assert!(v.value().len() <= cache.max_value_size(), "{i}");
        }
    }
    let _ = cache.set(b"after-damage", &[7u8; 300], None);
    let _ = cache.get(b"after-damage");
    let _ = cache.delete(&disk_key(1));
    let _ = cache.expire_now();
    let _ = cache.stats();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every committed seed (and regression input) of fuzz/corpus goes through its entry point
    /// in the ordinary test run too, without the fuzzer's instrumentation.
    #[test]
    fn every_fuzz_seed_runs_through_its_entry_point() {
        type EntryPoint = fn(&[u8]);
        let targets: [(&str, EntryPoint); 6] = [
            ("disk_header", disk_header),
            ("disk_file", disk_file),
            ("redis_frame", redis_frame),
            ("redis_replies", redis_replies),
            ("redis_url", redis_url),
            ("config_options", config_options),
        ];
        let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
        for (name, run) in targets {
            let mut seeds = 0;
            for entry in std::fs::read_dir(corpus.join(name)).expect(name) {
                run(&std::fs::read(entry.unwrap().path()).unwrap());
                seeds += 1;
            }
            assert!(seeds > 0, "no seeds for {name}");
        }
    }
}
