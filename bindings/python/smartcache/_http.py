"""HTTP response caching shared by smartcache.asgi and smartcache.wsgi: which requests and
responses are cached, their keys, the stored record's format, and the response a hit becomes.

Framework-neutral: requests and responses are plain (status, header list, body) here; the
ASGI and WSGI middlewares translate.

Stored records are read back from Redis and disk, so they are untrusted: ``decode_record``
checks every field and anything malformed is a miss. They are never pickled (unpickling what
another process wrote to Redis would run its code): a record is ``MAGIC``, a 4-byte length, a
JSON object (status, headers, write time, Vary names, ETag) and the body bytes. It is stored as
``bytes``, which every SmartCache serializer keeps as they are.
"""

from __future__ import annotations

import fnmatch
import hashlib
from email.utils import parsedate_to_datetime
import json
import re
import struct
import time
from typing import (Any, Dict, Iterable, List, Mapping, Optional, Pattern, Sequence, Tuple,
                    Union)
from urllib.parse import parse_qsl

from .cache import SmartCache
from .defaults import get_default_cache

Headers = List[Tuple[str, str]]
# Path patterns (glob str or compiled regex) to TTLs: a mapping, or pairs in match order.
RouteSpec = Union[Mapping[Any, Optional[float]],
                  Iterable[Tuple[Union[str, Pattern[str]], Optional[float]]]]

MAGIC = b"SZHTTP1\n"
_LEN = struct.Struct(">I")
CACHEABLE_METHODS = ("GET", "HEAD")
# Connection-level headers: about one transfer, never part of a stored response.
_HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
                         "te", "trailer", "transfer-encoding", "upgrade"})
# What a 304 carries (RFC 9110 15.4.5), plus the cache's own headers.
_NOT_MODIFIED_KEEPS = frozenset({"cache-control", "content-location", "date", "etag", "expires",
                                 "vary"})


def header(headers: Headers, name: str) -> Optional[str]:
    """The value of header `name` (case-insensitive), repeated ones joined with ", "."""
    values = [v for k, v in headers if k.lower() == name]
    return ", ".join(values) if values else None


def cache_control(value: Optional[str]) -> Dict[str, Optional[str]]:
    """A Cache-Control header's directives: lower-case name -> argument (None if none)."""
    out: Dict[str, Optional[str]] = {}
    for part in (value or "").split(","):
        name, eq, arg = part.strip().partition("=")
        if name:
            out[name.strip().lower()] = arg.strip().strip('"') if eq else None
    return out


def _seconds(arg: Optional[str]) -> Optional[int]:
    """A delta-seconds argument; None when absent or malformed."""
    if arg is None or not arg.isdigit():
        return None
    return int(arg)


def _max_age(directives: Dict[str, Optional[str]], *names: str) -> Optional[int]:
    """The first of the `names` directives present, in seconds; None when none is present.
    A malformed one (``max-age=-5``, ``max-age=abc``, a bare ``max-age``) counts as 0: the
    response is already stale (RFC 9111 1.2.2), never cached for the full route TTL."""
    for name in names:
        if name in directives:
            age = _seconds(directives[name])
            return 0 if age is None else age
    return None


def _expires_in(expires: str, now: float) -> float:
    """Seconds until an Expires date; a malformed date is in the past (RFC 9111 5.3)."""
    try:
        return parsedate_to_datetime(expires).timestamp() - now
    except (TypeError, ValueError, IndexError, OverflowError):
        return 0.0


def etag_matches(if_none_match: Optional[str], etag: Optional[str]) -> bool:
    """If-None-Match's weak comparison (RFC 9110 13.1.2): W/ prefixes ignored, * matches."""
    if not if_none_match or not etag:
        return False
    ours = _opaque(etag)
    return any(tag.strip() == "*" or _opaque(tag) == ours for tag in if_none_match.split(","))


def _opaque(tag: str) -> str:
    """An entity tag without its weakness indicator."""
    tag = tag.strip()
    return tag[2:] if tag.startswith("W/") else tag


class Record:
    """A stored response, or (status 0) an index entry naming the Vary headers of a path."""

    __slots__ = ("status", "headers", "body", "stored_at", "vary", "etag")

    def __init__(self, status: int, headers: Headers, body: bytes, stored_at: float,
                 vary: Sequence[str], etag: Optional[str]) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.stored_at = stored_at
        self.vary = list(vary)
        self.etag = etag

    def encode(self) -> bytes:
        meta = json.dumps({"status": self.status, "headers": self.headers, "t": self.stored_at,
                           "vary": self.vary, "etag": self.etag},
                          separators=(",", ":")).encode("utf-8")
        return b"".join((MAGIC, _LEN.pack(len(meta)), meta, self.body))


def decode_record(data: Any) -> Optional[Record]:
    """The record in `data` (what the cache returned), or None when it is not a well-formed one."""
    if not isinstance(data, bytes) or not data.startswith(MAGIC):
        return None
    try:
        start = len(MAGIC) + _LEN.size
        (n,) = _LEN.unpack_from(data, len(MAGIC))
        if start + n > len(data):
            return None
        meta = json.loads(data[start:start + n])
        status, headers, stored_at = meta["status"], meta["headers"], meta["t"]
        vary, etag = meta["vary"], meta["etag"]
        ok = (type(status) is int and 0 <= status < 1000
              and isinstance(stored_at, (int, float))
              and isinstance(headers, list)
              and all(isinstance(h, list) and len(h) == 2 and all(isinstance(x, str) for x in h)
                      for h in headers)
              and isinstance(vary, list) and all(isinstance(v, str) for v in vary)
              and (etag is None or isinstance(etag, str)))
        if not ok:
            return None
        return Record(status, [(k, v) for k, v in headers], data[start + n:], float(stored_at),
                      vary, etag)
    except (ValueError, KeyError, TypeError, struct.error):
        return None


class Request:
    """What the cache needs of a request: method, scheme, host, the root path the app is
    mounted at, path, raw query string, headers. Scheme, host and root path are part of the
    key: the same path on another site, over the other scheme or under another mount point is
    another resource (a Host header an attacker chose must never fill another site's entry)."""

    __slots__ = ("method", "scheme", "host", "root_path", "path", "query", "headers")

    def __init__(self, method: str, path: str, query: str, headers: Headers, *,
                 scheme: str = "http", host: str = "", root_path: str = "") -> None:
        self.method = method.upper()
        self.scheme = scheme.lower()
        self.host = normal_host(host, self.scheme)
        self.root_path = root_path
        self.path = path
        self.query = query
        self.headers = headers


_DEFAULT_PORTS = {"http": ":80", "https": ":443"}


def normal_host(host: str, scheme: str) -> str:
    """A Host value as keyed: lower case, without the scheme's default port."""
    host = host.strip().lower()
    port = _DEFAULT_PORTS.get(scheme)
    if port is not None and host.endswith(port):
        host = host[:-len(port)]
    return host


class Plan:
    """A request the cache may answer: its key, route TTL and Cache-Control directives."""

    __slots__ = ("request", "key", "ttl", "directives", "cookie_bound")

    def __init__(self, request: Request, key: str, ttl: float,
                 directives: Dict[str, Optional[str]], cookie_bound: bool = False) -> None:
        self.request = request
        self.key = key
        self.ttl = ttl
        self.directives = directives
        # The request carries a Cookie the key does not cover: only a response that says
        # Vary: Cookie (keyed by the cookie) may answer it or be stored from it.
        self.cookie_bound = cookie_bound


class Policy:
    """The caching rules one middleware was configured with (see smartcache.asgi's
    CacheMiddleware for the options)."""

    def __init__(self, cache: Optional[SmartCache], ttl: Optional[float], routes: RouteSpec,
                 vary: Iterable[str], cacheable_statuses: Iterable[int], max_body_size: int,
                 key_prefix: str) -> None:
        if cache is not None and not isinstance(cache, SmartCache):
            raise TypeError(f"cache must be a SmartCache or None, not {type(cache).__name__}")
        self._cache = cache
        self.default_ttl = _check_ttl(ttl, "ttl")
        pairs = routes.items() if isinstance(routes, Mapping) else routes
        self.routes: List[Tuple[Pattern[str], Optional[float]]] = [
            (p if isinstance(p, re.Pattern) else re.compile(fnmatch.translate(p)),
             _check_ttl(t, f"the ttl of route {p!r}")) for p, t in pairs]
        self.vary = sorted({v.strip().lower() for v in vary})
        self.statuses = frozenset(int(s) for s in cacheable_statuses)
        if max_body_size < 0:
            raise ValueError("max_body_size must be >= 0")
        self.max_body_size = max_body_size
        self.key_prefix = key_prefix

    def cache(self) -> SmartCache:
        return self._cache if self._cache is not None else get_default_cache()

    def plan(self, request: Request) -> Optional[Plan]:
        """How to cache `request`, or None when it bypasses the cache entirely."""
        if request.method not in CACHEABLE_METHODS:
            return None
        ttl = self.ttl_for(request.path)
        if ttl is None:
            return None
        control = header(request.headers, "cache-control")
        directives = cache_control(control)
        if control is None and "no-cache" in cache_control(header(request.headers, "pragma")):
            directives["no-cache"] = None  # HTTP/1.0's no-cache (RFC 9111 5.4)
        # no-store: the client asks that nothing of this exchange be kept. Authorization: a
        # shared cache must not answer one user's authenticated request for another.
        if "no-store" in directives or header(request.headers, "authorization") is not None:
            return None
        cookie_bound = ("cookie" not in self.vary
                        and header(request.headers, "cookie") is not None)
        return Plan(request, self.base_key(request), ttl, directives, cookie_bound)

    def ttl_for(self, path: str) -> Optional[float]:
        """The first matching route's TTL (None: not cached), else the default TTL."""
        for pattern, ttl in self.routes:
            if pattern.fullmatch(path):
                return ttl
        return self.default_ttl

    def base_key(self, request: Request) -> str:
        """Method, scheme, host, root path, path, the query's parameters sorted by name (a
        stable sort: repeated parameters keep their order, ``?sort=a&sort=b`` is not
        ``?sort=b&sort=a``), and the configured request headers."""
        query = sorted(parse_qsl(request.query, keep_blank_values=True), key=lambda p: p[0])
        configured = [(name, header(request.headers, name) or "") for name in self.vary]
        text = json.dumps([request.method, request.scheme, request.host, request.root_path,
                           request.path, query, configured])
        digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
        return f"{self.key_prefix}:{digest}"

    @staticmethod
    def variant_key(base: str, vary: Sequence[str], request: Request) -> str:
        """The key of the response variant for the request headers named by Vary."""
        values = [(name, header(request.headers, name) or "") for name in vary]
        return f"{base}:v:{hashlib.sha256(json.dumps(values).encode('utf-8')).hexdigest()}"

    def usable(self, record: Optional[Record], plan: Plan, now: float) -> bool:
        """True when a stored response may answer this request (request no-cache / max-age)."""
        if record is None or record.status == 0:
            return False
        if "no-cache" in plan.directives:
            return False
        if plan.cookie_bound and "cookie" not in record.vary:
            return False  # stored for requests without this cookie
        max_age = _max_age(plan.directives, "max-age")
        return max_age is None or now - record.stored_at <= max_age

    def storable_ttl(self, plan: Plan, status: int, headers: Headers,
                     now: float) -> Optional[float]:
        """The TTL to store a response for, or None when it must not be stored."""
        if status not in self.statuses:
            return None
        if header(headers, "set-cookie") is not None:
            return None  # a cookie for one client must not be handed to others
        vary = header(headers, "vary")
        if vary is not None and "*" in vary:
            return None
        if plan.cookie_bound and "cookie" not in _names(vary):
            return None  # may depend on the cookie, and the key does not hold it
        if "text/event-stream" in (header(headers, "content-type") or "").lower():
            return None  # an event stream is live: never replayed
        directives = cache_control(header(headers, "cache-control"))
        if {"no-store", "private", "no-cache"} & directives.keys():
            return None
        length = _seconds(header(headers, "content-length"))
        if length is not None and length > self.max_body_size:
            return None
        ttl = plan.ttl
        age: Optional[float] = _max_age(directives, "s-maxage", "max-age")
        if age is None:
            expires = header(headers, "expires")
            age = None if expires is None else _expires_in(expires, now)
        if age is not None:
            if age <= 0:
                return None
            ttl = min(ttl, float(age))
        return ttl

    def records(self, plan: Plan, status: int, headers: Headers, body: bytes,
                now: float) -> Tuple[Record, List[Tuple[str, Record]]]:
        """The record of a response, and what to store: [(key, record)], with an index entry
        at the base key when the response has a Vary header."""
        kept = [(k, v) for k, v in headers if k.lower() not in _HOP_BY_HOP]
        etag = header(kept, "etag")
        if etag is None:
            etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
            kept.append(("ETag", etag))
        vary = _names(header(kept, "vary"))
        record = Record(status, kept, body, now, vary, etag)
        if not vary:
            return record, [(plan.key, record)]
        index = Record(0, [], b"", now, vary, None)
        return record, [(plan.key, index),
                        (self.variant_key(plan.key, vary, plan.request), record)]

    def variant_to_read(self, plan: Plan, first: Optional[Record]) -> Optional[str]:
        """After reading the base key: the variant key to read next, if it was an index."""
        if first is not None and first.status == 0 and first.vary:
            return self.variant_key(plan.key, first.vary, plan.request)
        return None


def _names(value: Optional[str]) -> List[str]:
    """The lower-case header names of a Vary value, sorted, without repeats."""
    return sorted({v.strip().lower() for v in (value or "").split(",") if v.strip()})


def _check_ttl(ttl: Optional[float], what: str) -> Optional[float]:
    if ttl is None:
        return None
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not ttl > 0:
        raise ValueError(f"{what} must be a positive number of seconds or None (not cached), "
                         f"got {ttl!r}")
    return float(ttl)


def response(record: Record, request: Request, now: float,
             hit: bool) -> Tuple[int, Headers, bytes]:
    """What the client receives for a stored response: the record with Age and X-Cache: HIT
    (a hit) or X-Cache: MISS (just stored), or 304 Not Modified when If-None-Match matches."""
    if etag_matches(header(request.headers, "if-none-match"), record.etag):
        status = 304
        headers = [(k, v) for k, v in record.headers if k.lower() in _NOT_MODIFIED_KEEPS]
        body = b""
    else:
        status, headers, body = record.status, list(record.headers), record.body
        if request.method == "HEAD":
            body = b""
    # Content-Length is the body's, but a HEAD answer keeps the one its GET would have.
    length = header(headers, "content-length") if request.method == "HEAD" else None
    headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
    if status != 304:
        headers.append(("Content-Length", length if length is not None else str(len(body))))
    if hit:
        headers.append(("Age", str(max(0, int(now - record.stored_at)))))
    headers.append(("X-Cache", "HIT" if hit else "MISS"))
    return status, headers, body


def now() -> float:
    return time.time()
