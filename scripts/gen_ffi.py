#!/usr/bin/env python3
"""Generates bindings/python/smartcache/_native.py (ctypes declarations) and _cdef.h (the same
declarations for the cffi backend's build) from include/smartcache.h.

Why generated: the header is itself generated from the Rust sources by cbindgen, so hand-written
ctypes declarations would drift silently (a wrong argtype is memory corruption, not an error).
`make check-generated` runs this script and fails when the committed file differs.

The parser is deliberately small and only understands the shapes cbindgen emits for this crate:
  #define SZ_NAME <int | "string" | integer expression>
  typedef struct name name;                       -> opaque handle type
  typedef struct { <fields> } name;               -> ctypes.Structure (fields may be T x[N])
  typedef RET (*name)(PARAMS);                    -> ctypes.CFUNCTYPE
  RET name(PARAMS);                               -> argtypes / restype
Anything else it meets is an error (exit 1) rather than silently skipped, so a new C construct
forces an update here instead of a missing declaration.

Usage: gen_ffi.py [--header PATH] [--out PATH] [--cdef-out PATH] [--check]
"""
from __future__ import annotations

import argparse
import ast
import hashlib
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEADER = ROOT / "include" / "smartcache.h"
OUT = ROOT / "bindings" / "python" / "smartcache" / "_native.py"
CDEF_OUT = ROOT / "bindings" / "python" / "smartcache" / "_cdef.h"

SCALARS = {
    "void": "None",
    "int": "ctypes.c_int",
    "unsigned int": "ctypes.c_uint",
    "long": "ctypes.c_long",
    "size_t": "ctypes.c_size_t",
    "ssize_t": "ctypes.c_ssize_t",
    "bool": "ctypes.c_bool",
    "char": "ctypes.c_char",
    "float": "ctypes.c_float",
    "double": "ctypes.c_double",
    "int8_t": "ctypes.c_int8",
    "int16_t": "ctypes.c_int16",
    "int32_t": "ctypes.c_int32",
    "int64_t": "ctypes.c_int64",
    "uint8_t": "ctypes.c_uint8",
    "uint16_t": "ctypes.c_uint16",
    "uint32_t": "ctypes.c_uint32",
    "uint64_t": "ctypes.c_uint64",
}


class HeaderError(Exception):
    """The header contains a construct this generator does not understand."""


@dataclass
class Define:
    name: str
    value: object
    doc: str


@dataclass
class Field:
    name: str
    ctype: str
    doc: str


@dataclass
class Struct:
    name: str
    doc: str
    fields: list[Field] = field(default_factory=list)
    opaque: bool = False


@dataclass
class Function:
    name: str
    restype: str
    params: list[tuple[str, str]]
    doc: str
    callback: bool = False


def clean_doc(raw: str) -> str:
    """The text of a /** ... */ comment, without the stars, as one paragraph per blank line."""
    lines = []
    for line in raw.splitlines():
        line = line.strip()
        line = re.sub(r"^/\*\*|\*/$", "", line).strip()
        line = re.sub(r"^\*\s?", "", line)
        lines.append(line.rstrip())
    while lines and not lines[0]:
        lines.pop(0)
    while lines and not lines[-1]:
        lines.pop()
    return "\n".join(lines)


def eval_int(expr: str) -> int:
    """Evaluates an integer constant expression made of literals, + - * / % << >> | & and ()."""
    node = ast.parse(expr.strip(), mode="eval").body

    def ev(n: ast.AST) -> int:
        if isinstance(n, ast.Constant) and isinstance(n.value, int):
            return n.value
        if isinstance(n, ast.UnaryOp) and isinstance(n.op, (ast.USub, ast.UAdd)):
            v = ev(n.operand)
            return -v if isinstance(n.op, ast.USub) else v
        if isinstance(n, ast.BinOp):
            a, b = ev(n.left), ev(n.right)
            if isinstance(n.op, ast.Add):
                return a + b
            if isinstance(n.op, ast.Sub):
                return a - b
            if isinstance(n.op, ast.Mult):
                return a * b
            if isinstance(n.op, (ast.Div, ast.FloorDiv)):
                return int(a / b)
            if isinstance(n.op, ast.Mod):
                return a % b
            if isinstance(n.op, ast.LShift):
                return a << b
            if isinstance(n.op, ast.RShift):
                return a >> b
            if isinstance(n.op, ast.BitOr):
                return a | b
            if isinstance(n.op, ast.BitAnd):
                return a & b
        raise HeaderError(f"unsupported constant expression: {expr!r}")

    return ev(node)


def parse_define_value(raw: str) -> object:
    raw = raw.strip()
    if raw.startswith('"') and raw.endswith('"'):
        return ast.literal_eval(raw)
    raw = re.sub(r"(?<=\d)[uUlL]+\b", "", raw)
    return eval_int(raw)


class Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.defines: list[Define] = []
        self.structs: list[Struct] = []
        self.functions: list[Function] = []
        self.callbacks: list[Function] = []
        self.known_types: dict[str, str] = {}  # C name -> kind ("struct", "opaque", "callback")
        # Every declaration as written (comments dropped, whitespace collapsed), for cffi.
        self.declarations: list[str] = []

    def parse(self) -> "Parser":
        text = self.text
        # C++ guards carry `extern "C" {` and its closing brace; they are not declarations.
        text = re.sub(r"#ifdef __cplusplus.*?#endif[^\n]*\n", "", text, flags=re.S)
        # Top-level tokens: doc comments, other comments, preprocessor lines, statements.
        pos = 0
        pending_doc = ""
        token = re.compile(
            r"\s*(?:(?P<doc>/\*\*.*?\*/)|(?P<comment>/\*.*?\*/|//[^\n]*)|(?P<pp>#[^\n]*)"
            r"|(?P<stmt>[^#/;{]*(?:\{[^}]*\}[^;]*)?;))",
            re.S,
        )
        while True:
            while pos < len(text) and text[pos].isspace():
                pos += 1
            if pos >= len(text):
                break
            m = token.match(text, pos)
            if not m or m.end() == pos:
                raise HeaderError(f"cannot parse header near: {text[pos:pos + 80]!r}")
            pos = m.end()
            if m.group("doc"):
                pending_doc = clean_doc(m.group("doc"))
            elif m.group("comment"):
                continue
            elif m.group("pp"):
                self.preprocessor(m.group("pp"), pending_doc)
                pending_doc = ""
            else:
                self.statement(m.group("stmt").strip(), pending_doc)
                pending_doc = ""
        return self

    def preprocessor(self, line: str, doc: str) -> None:
        m = re.match(r"#define\s+(SZ_\w+)\s+(.+)$", line.strip())
        if m:
            self.defines.append(Define(m.group(1), parse_define_value(m.group(2)), doc))
        # include guards, #include, #ifndef/#endif: nothing to declare

    def statement(self, stmt: str, doc: str) -> None:
        stmt = re.sub(r"//[^\n]*", "", stmt)
        bare = re.sub(r"/\*.*?\*/", "", stmt, flags=re.S)  # without a struct's field docs
        self.declarations.append(" ".join(bare.split()).rstrip(";").strip() + ";")
        stmt = " ".join(stmt.split()).rstrip(";").strip()
        m = re.fullmatch(r"typedef struct (\w+) (\w+)", stmt)
        if m and m.group(1) == m.group(2):
            self.structs.append(Struct(m.group(1), doc, opaque=True))
            self.known_types[m.group(1)] = "opaque"
            return
        m = re.fullmatch(r"typedef struct(?: \w+)? \{(.*)\} (\w+)", stmt, re.S)
        if m:
            self.structs.append(self.struct_body(m.group(2), m.group(1), doc))
            self.known_types[m.group(2)] = "struct"
            return
        m = re.fullmatch(r"typedef (.+?)\(\s*\*\s*(\w+)\s*\)\s*\((.*)\)", stmt)
        if m:
            cb = Function(m.group(2), self.ctype(m.group(1), ret=True),
                          self.params(m.group(3)), doc, callback=True)
            self.callbacks.append(cb)
            self.known_types[cb.name] = "callback"
            return
        m = re.fullmatch(r"(.+?)\b(\w+)\s*\((.*)\)", stmt)
        if m and not stmt.startswith("typedef"):
            self.functions.append(
                Function(m.group(2), self.ctype(m.group(1), ret=True), self.params(m.group(3)), doc))
            return
        raise HeaderError(f"unsupported declaration: {stmt!r}")

    def struct_body(self, name: str, body: str, doc: str) -> Struct:
        st = Struct(name, doc)
        # The body still holds the fields' doc comments (the statement regex kept them).
        parts = re.split(r"(/\*\*.*?\*/)", body, flags=re.S)
        field_doc = ""
        for part in parts:
            if part.startswith("/**"):
                field_doc = clean_doc(part)
                continue
            for decl in part.split(";"):
                decl = " ".join(decl.split())
                if not decl:
                    continue
                m = re.fullmatch(r"(.+?)\s*\b(\w+)\s*(?:\[\s*(\w+)\s*\])?", decl)
                if not m:
                    raise HeaderError(f"unsupported field in {name}: {decl!r}")
                ctype = self.ctype(m.group(1))
                if m.group(3):
                    n = m.group(3)
                    count = int(n) if n.isdigit() else self.define_int(n)
                    ctype = f"({ctype} * {count})"
                st.fields.append(Field(m.group(2), ctype, field_doc))
                field_doc = ""
        return st

    def define_int(self, name: str) -> int:
        for d in self.defines:
            if d.name == name and isinstance(d.value, int):
                return d.value
        raise HeaderError(f"array size {name} is not a known integer #define")

    def params(self, text: str) -> list[tuple[str, str]]:
        text = " ".join(text.split())
        if text in ("", "void"):
            return []
        out = []
        for i, p in enumerate(text.split(",")):
            p = p.strip()
            m = re.fullmatch(r"(.+?[\s*])(\w+)", p)
            if not m:
                raise HeaderError(f"unsupported parameter: {p!r}")
            out.append((m.group(2), self.ctype(m.group(1))))
        return out

    def ctype(self, decl: str, ret: bool = False) -> str:
        """The ctypes expression for a C type. Pointers to bytes become c_void_p (an address the
        caller reads with ctypes.string_at), library-owned `char *` results too (they must be
        passed back to sz_string_free, which c_char_p would lose), `const char *` becomes
        c_char_p (borrowed text), and pointers to our structs become POINTER(struct)."""
        decl = " ".join(decl.replace("*", " * ").split())
        stars = decl.count("*")
        words = [w for w in decl.replace("*", " ").split() if w not in ("const", "struct")]
        const = "const" in decl.split()
        base = " ".join(words)
        if stars == 0:
            if base in SCALARS:
                return SCALARS[base]
            if self.known_types.get(base) in ("struct", "callback"):
                return base
            raise HeaderError(f"unknown type {decl!r}")
        if base in self.known_types and self.known_types[base] != "callback":
            t = base
            for _ in range(stars):
                t = f"POINTER({t})"
            return t
        if base == "char" and stars == 1:
            return "ctypes.c_char_p" if const else "ctypes.c_void_p"
        if base == "char" and stars == 2:
            return "POINTER(ctypes.c_void_p)"
        if base in ("void", "uint8_t", "int8_t") and stars == 1:
            return "ctypes.c_void_p"
        if base in SCALARS and stars == 1:
            return f"POINTER({SCALARS[base]})"
        if base in ("void", "uint8_t") and stars == 2:
            return "POINTER(ctypes.c_void_p)"
        raise HeaderError(f"unsupported pointer type {decl!r}")


def comment(doc: str, indent: str = "") -> list[str]:
    return [f"{indent}# {line}".rstrip() for line in doc.splitlines()] if doc else []


def render_struct(o: list[str], s: Struct) -> None:
    o.append("")
    o.append("")
    o.append(f"class {s.name}(ctypes.Structure):")
    doc = s.doc.replace('"""', "'''") or s.name
    if "\n" in doc:
        body = "\n".join(("    " + line).rstrip() for line in doc.splitlines()[1:])
        o.append(f'    """{doc.splitlines()[0]}\n{body}\n    """')
    else:
        o.append(f'    """{doc}"""')
    if s.opaque:
        o.append("")
        o.append("    # Opaque: only ever handled through POINTER(" + s.name + ").")
        return
    o.append("")
    o.append("    _fields_ = [")
    for f in s.fields:
        o.extend(comment(f.doc, "        "))
        o.append(f"        ({f.name!r}, {f.ctype}),")
    o.append("    ]")


def render(p: Parser, header_bytes: bytes, header_rel: str) -> str:
    digest = hashlib.sha256(header_bytes).hexdigest()
    o: list[str] = []
    o.append(f"# Generated by scripts/gen_ffi.py from {header_rel}. DO NOT EDIT.")
    o.append("# Regenerate with `python scripts/gen_ffi.py`; `make check-generated` fails when stale.")
    o.append('"""ctypes declarations of the libsmartcache C ABI (constants, structs, prototypes).')
    o.append("")
    o.append("Generated from the C header so that argument and result types can never drift from")
    o.append("the library. Nothing here loads the library: `bind(lib)` attaches argtypes/restype")
    o.append('to an already loaded ctypes.CDLL (see smartcache._lib)."""')
    o.append("")
    o.append("from __future__ import annotations")
    o.append("")
    o.append("import ctypes")
    o.append("from ctypes import POINTER")
    o.append("from typing import Any, Dict, List, Tuple")
    o.append("")
    o.append(f'HEADER_SHA256 = "{digest}"')
    o.append("")
    o.append("# --- constants (#define SZ_*) ---")
    for d in p.defines:
        o.extend(comment(d.doc))
        o.append(f"{d.name} = {d.value!r}")
    o.append("")
    codes = [d for d in p.defines if d.name == "SZ_OK" or d.name == "SZ_NOT_FOUND"
             or d.name.startswith("SZ_ERR_")]
    o.append("# Every status code by value, for messages.")
    o.append("STATUS_NAMES: Dict[int, str] = {")
    for d in codes:
        o.append(f"    {d.name}: {d.name!r},")
    o.append("}")
    o.append("")
    o.append("# --- types ---")
    # Opaque handles first, then callback types (their parameters are handle pointers), then
    # the structs (their fields may be callbacks).
    for s in [s for s in p.structs if s.opaque]:
        render_struct(o, s)
    o.append("")
    o.append("")
    for cb in p.callbacks:
        o.extend(comment(cb.doc))
        args = ", ".join([cb.restype] + [t for _, t in cb.params])
        o.append(f"{cb.name} = ctypes.CFUNCTYPE({args})")
        o.append(f"{cb.name.upper()}_PARAMS = {tuple(n for n, _ in cb.params)!r}")
        o.append("")
    for s in [s for s in p.structs if not s.opaque]:
        render_struct(o, s)
    o.append("")
    o.append("")
    o.append("# --- functions: name -> (restype, argtypes, parameter names) ---")
    o.append("FUNCTIONS: Dict[str, Tuple[Any, List[Any], Tuple[str, ...]]] = {")
    for f in p.functions:
        first = f.doc.split("\n\n")[0].replace("\n", " ") if f.doc else ""
        if first:
            o.append(f"    # {first}")
        argtypes = ", ".join(t for _, t in f.params)
        names = tuple(n for n, _ in f.params)
        o.append(f"    {f.name!r}: ({f.restype}, [{argtypes}], {names!r}),")
    o.append("}")
    o.append("")
    o.append("")
    o.append("def bind(lib: ctypes.CDLL) -> List[str]:")
    o.append('    """Sets argtypes/restype of every function on `lib`; returns the names it lacks."""')
    o.append("    missing: List[str] = []")
    o.append("    for name, (restype, argtypes, _names) in FUNCTIONS.items():")
    o.append("        try:")
    o.append("            fn = getattr(lib, name)")
    o.append("        except AttributeError:")
    o.append("            missing.append(name)")
    o.append("            continue")
    o.append("        fn.restype = restype")
    o.append("        fn.argtypes = argtypes")
    o.append("    return missing")
    o.append("")
    return "\n".join(o)


def render_cdef(p: Parser, header_bytes: bytes, header_rel: str) -> str:
    """The header's declarations for cffi's cdef(): every typedef and prototype exactly as the
    header writes them, without comments and preprocessor lines (cffi knows the stdint and
    stddef types; the constants reach Python through _native.py)."""
    digest = hashlib.sha256(header_bytes).hexdigest()
    o = [f"/* Generated by scripts/gen_ffi.py from {header_rel} (sha256 {digest}).",
         "   DO NOT EDIT: `make check-generated` fails when stale. Read by _cffi_build.py. */"]
    o.extend(p.declarations)
    o.append("")
    return "\n".join(o)


def write_or_check(path: Path, text: str, check: bool) -> bool:
    """Writes `text` to `path` unless it is already there; with `check`, writes nothing and
    answers whether `path` is current."""
    current = path.read_text(encoding="utf-8") if path.exists() else ""
    if check:
        if current != text:
            print(f"gen_ffi: {path} is stale; run scripts/gen_ffi.py", file=sys.stderr)
            return False
        return True
    path.parent.mkdir(parents=True, exist_ok=True)
    if current != text:
        path.write_text(text, encoding="utf-8")
    return True


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--header", type=Path, default=HEADER)
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--cdef-out", type=Path, default=CDEF_OUT)
    ap.add_argument("--check", action="store_true", help="exit 1 if --out is stale, write nothing")
    args = ap.parse_args(argv)
    raw = args.header.read_bytes()
    try:
        parser = Parser(raw.decode("utf-8")).parse()
    except HeaderError as e:
        print(f"gen_ffi: {args.header}: {e}", file=sys.stderr)
        return 1
    try:
        rel = args.header.resolve().relative_to(ROOT).as_posix()
    except ValueError:
        rel = args.header.name
    fresh = [write_or_check(args.out, render(parser, raw, rel), args.check),
             write_or_check(args.cdef_out, render_cdef(parser, raw, rel), args.check)]
    return 0 if all(fresh) else 1

if __name__ == "__main__":
    sys.exit(main())
