//! Generates include/smartcache.h from the `sz_*` exports with cbindgen (feature "header", on
//! by default), names the shared library's soname and links hiredis statically. The header is
//! committed; `make check-generated` fails when it is stale.

use std::{env, fs, path::PathBuf};

fn main() {
    let major = env::var("CARGO_PKG_VERSION_MAJOR").unwrap();

    // The soname carries the ABI major version: 0.x.y -> libsmartcache.so.0.
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libsmartcache.so.{major}");
    println!("cargo:rerun-if-changed=src/ffi");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    link_hiredis_statically();
    #[cfg(feature = "header")]
    generate_header();
}

/// Writes include/smartcache.h from the `sz_*` exports (feature "header", on by default).
#[cfg(feature = "header")]
fn generate_header() {
    let crate_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let version = env::var("CARGO_PKG_VERSION").unwrap();
    let mut config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml"))
        .expect("cbindgen.toml is readable");
    config.after_includes = Some(version_macros(&version));

    let header = match cbindgen::Builder::new()
        .with_crate(&crate_dir)
        .with_config(config)
        .generate()
    {
        Ok(bindings) => {
            let mut out = Vec::new();
            bindings.write(&mut out);
            out
        }
        Err(e) => panic!("cbindgen failed: {e}"),
    };
    let path = crate_dir.join("include/smartcache.h");
    // Write only when the text changed, so an unchanged header keeps its mtime.
    if fs::read(&path).ok().as_deref() != Some(&header[..]) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, header).expect("write include/smartcache.h");
    }
}

#[cfg(feature = "header")]
fn version_macros(version: &str) -> String {
    let parts: Vec<u32> = version
        .split(['.', '-'])
        .take(3)
        .map(|p| p.parse().unwrap_or(0))
        .collect();
    format!(
        "\n#define SZ_VERSION \"{version}\"\n#define SZ_VERSION_MAJOR {}\n#define SZ_VERSION_MINOR {}\n#define SZ_VERSION_PATCH {}\n#define SZ_VERSION_NUMBER ({} * 10000 + {} * 100 + {})\n",
        parts[0], parts[1], parts[2], parts[0], parts[1], parts[2]
    )
}

/// Links the hiredis that hiredis-sys built as a static archive.
///
/// hiredis-sys emits `rustc-link-lib=dylib=hiredis`, which points at a libhiredis.so inside
/// cargo's OUT_DIR: a product linked against it would need that build directory at run time.
/// hiredis-sys declares `links = "hiredis"`, so its `cargo:root` reaches us as DEP_HIREDIS_ROOT.
/// We copy its libhiredis.a under a name of our own (so `-l` cannot pick the .so) and link that
/// statically; every hiredis symbol then resolves from the archive, and the linker's
/// `--as-needed` (rustc's default on Linux) drops the now-unused libhiredis.so from NEEDED.
fn link_hiredis_statically() {
    println!("cargo:rerun-if-env-changed=DEP_HIREDIS_ROOT");
    let root = PathBuf::from(
        env::var("DEP_HIREDIS_ROOT")
            .expect("DEP_HIREDIS_ROOT is set by the hiredis-sys dependency (links = \"hiredis\")"),
    );
    let archive = root.join("lib/libhiredis.a");
    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    fs::copy(&archive, out.join("libsc_hiredis.a"))
        .unwrap_or_else(|e| panic!("copy {}: {e}", archive.display()));
    println!("cargo:rustc-link-search=native={}", out.display());
    println!("cargo:rustc-link-lib=static=sc_hiredis");
}
