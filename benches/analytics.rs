//! Issue targets for analytics and compression, side by side in one run:
//! - L1 pinned get through the C ABI with enable_stats on vs off (target: stats cost < 5%);
//! - get of the guide's benchmark value (pickled {"benchmark": "data", "value": range(100)})
//!   and of 4 KiB of JSON-like text, stored compressed vs plain; compression ratios printed.

mod common;

use common::*;
use criterion::{criterion_group, criterion_main, Criterion};
use smartcache::ffi::*;
use std::ffi::CString;
use std::hint::black_box;
use std::time::Duration;

/// pickle.dumps({"benchmark": "data", "value": list(range(100))}, protocol=5): 247 bytes.
const GUIDE_VALUE_HEX: &str = "800595ec000000000000007d94288c0962656e63686d61726b948c0464617461948c0576616c7565945d94284b004b014b024b034b044b054b064b074b084b094b0a4b0b4b0c4b0d4b0e4b0f4b104b114b124b134b144b154b164b174b184b194b1a4b1b4b1c4b1d4b1e4b1f4b204b214b224b234b244b254b264b274b284b294b2a4b2b4b2c4b2d4b2e4b2f4b304b314b324b334b344b354b364b374b384b394b3a4b3b4b3c4b3d4b3e4b3f4b404b414b424b434b444b454b464b474b484b494b4a4b4b4b4c4b4d4b4e4b4f4b504b514b524b534b544b554b564b574b584b594b5a4b5b4b5c4b5d4b5e4b5f4b604b614b624b6365752e";

fn guide_value() -> Vec<u8> {
    (0..GUIDE_VALUE_HEX.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&GUIDE_VALUE_HEX[i..i + 2], 16).unwrap())
        .collect()
}

/// 4 KiB of API-response-like JSON with varying ids and names.
fn json_4k() -> Vec<u8> {
    let mut s = String::from("[");
    let mut i = 0;
    while s.len() < 4096 - 120 {
        s.push_str(&format!(
            "{{\"id\":{},\"name\":\"user{}\",\"email\":\"user{}@example.com\",\"active\":{}}},",
            1000 + i * 37,
            i,
            i * 7,
            i % 3 == 0
        ));
        i += 1;
    }
    s.push(']');
    let mut v = s.into_bytes();
    v.resize(4096, b' ');
    v
}

fn open(opts: &[(&str, &str)]) -> Smart {
    let cfg = sz_config_new();
    for (n, v) in [
        ("memory_capacity", "200000"),
        ("memory_ttl", "0"),
        ("auto_expire_interval", "0"),
    ]
    .iter()
    .chain(opts)
    {
        let (n, v) = (CString::new(*n).unwrap(), CString::new(*v).unwrap());
        // SAFETY: live config and NUL-terminated strings.
        assert_eq!(unsafe { sz_config_set(cfg, n.as_ptr(), v.as_ptr()) }, SZ_OK);
    }
    let mut c = std::ptr::null_mut();
    // SAFETY: live config, valid out pointer; the config is freed once.
    unsafe {
        assert_eq!(sz_cache_open(cfg, &mut c), SZ_OK);
        sz_config_free(cfg);
    }
    Smart(c)
}

fn stats_of(c: &Smart) -> sz_stats {
    let mut s = sz_stats {
        struct_size: std::mem::size_of::<sz_stats>(),
        ..Default::default()
    };
    // SAFETY: live handle, sized struct.
    unsafe { sz_cache_stats(c.0, &mut s) };
    s
}

fn stats_cost(c: &mut Criterion) {
    let value = [7u8; VALUE_LEN];
    let on = open(&[("enable_stats", "true")]);
    let off = open(&[("enable_stats", "false")]);
    for i in 0..100_000 {
        on.set(&key(i), &value);
        off.set(&key(i), &value);
    }
    let mut rng = Rng(7);
    let keys: Vec<[u8; 16]> = (0..1 << 16)
        .map(|_| key(rng.next_u64() % 100_000))
        .collect();
    let mut g = c.benchmark_group("l1_get_enable_stats");
    let mut i = 0;
    g.bench_function("stats_on", |b| {
        b.iter(|| {
            i = (i + 1) & (keys.len() - 1);
            black_box(on.get(&keys[i]))
        })
    });
    g.bench_function("stats_off", |b| {
        b.iter(|| {
            i = (i + 1) & (keys.len() - 1);
            black_box(off.get(&keys[i]))
        })
    });
    g.finish();
}

fn compression(c: &mut Criterion) {
    for (name, value) in [
        ("guide_value_247B", guide_value()),
        ("json_4KiB", json_4k()),
    ] {
        let plain = open(&[("compression_enabled", "false")]);
        // The guide's value is under the default threshold (1024), so lower it to compare.
        let packed = open(&[
            ("compression_enabled", "true"),
            ("compression_min_size", "64"),
        ]);
        for i in 0..10_000 {
            plain.set(&key(i), &value);
            packed.set(&key(i), &value);
        }
        let s = stats_of(&packed);
        println!(
            "{name}: {} bytes, compression ratio {:.2}x, memory {} vs {} bytes for 10,000 entries",
            value.len(),
            s.compression_ratio,
            s.memory_bytes,
            stats_of(&plain).memory_bytes
        );
        let mut g = c.benchmark_group(format!("get_{name}"));
        let mut i = 0u64;
        g.bench_function("plain", |b| {
            b.iter(|| {
                i = (i + 1) % 10_000;
                black_box(plain.get(&key(i)))
            })
        });
        g.bench_function("compressed", |b| {
            b.iter(|| {
                i = (i + 1) % 10_000;
                black_box(packed.get(&key(i)))
            })
        });
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1)).sample_size(30);
    targets = stats_cost, compression
}
criterion_main!(benches);
