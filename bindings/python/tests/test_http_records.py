"""Stored HTTP responses are untrusted input (Redis and disk): a damaged or foreign entry is a
miss, never an exception or a wrong response."""

from __future__ import annotations

import pickle

from smartcache import SmartCache
from smartcache._http import MAGIC, Policy, Record, Request, decode_record


def test_a_record_survives_the_cache_and_damage_is_a_miss(cache: SmartCache) -> None:
    record = Record(200, [("Content-Type", "text/plain"), ("ETag", '"x"')], b"body\x00",
                    1700000000.5, ["accept-language"], '"x"')
    cache.set("r", record.encode())
    back = decode_record(cache.get("r"))
    assert back is not None
    assert (back.status, back.headers, back.body, back.stored_at, back.vary, back.etag) == (
        200, [("Content-Type", "text/plain"), ("ETag", '"x"')], b"body\x00", 1700000000.5,
        ["accept-language"], '"x"')
    data = record.encode()
    for cut in range(len(data)):  # every truncation: a miss, or (body cut) a shorter body
        damaged = decode_record(data[:cut])
        assert damaged is None or (damaged.status == 200 and len(damaged.body) < 5)
    foreign = [None, "text", 42, pickle.dumps({"status": 200}), b"", MAGIC,
               MAGIC + b"\xff\xff\xff\xff{}", MAGIC + b"\x00\x00\x00\x02{}",
               MAGIC + b"\x00\x00\x00\x0a[1,2,3,4]x",
               MAGIC + b'\x00\x00\x00\x3a{"status":"200","headers":[],"t":1,"vary":[],"etag":null}']
    for entry in foreign:
        assert decode_record(entry) is None, entry


def test_keys_sort_the_query_and_include_configured_headers(cache: SmartCache) -> None:
    policy = Policy(cache, 60, {"/admin/*": None}, ["X-Tenant"], (200,), 1024, "p")

    def key(path: str, query: str, **headers: str) -> str:
        plan = policy.plan(Request("GET", path, query, list(headers.items())))
        assert plan is not None
        return plan.key

    assert key("/a", "b=2&a=1") == key("/a", "a=1&b=2") != key("/a", "a=1")
    assert key("/a", "", **{"x-tenant": "1"}) != key("/a", "", **{"x-tenant": "2"})
    assert policy.plan(Request("GET", "/admin/users", "", [])) is None
    assert policy.plan(Request("POST", "/a", "", [])) is None
    assert policy.plan(Request("GET", "/a", "", [("Cache-Control", "no-store")])) is None


def test_a_cookie_in_the_configured_vary_list_keys_the_request(cache: SmartCache) -> None:
    keyed = Policy(cache, 60, (), ["Cookie"], (200,), 1024, "p")
    alice = keyed.plan(Request("GET", "/a", "", [("Cookie", "s=alice")]))
    bob = keyed.plan(Request("GET", "/a", "", [("Cookie", "s=bob")]))
    assert alice is not None and bob is not None
    assert not alice.cookie_bound and alice.key != bob.key
    # Without it, the request is bound to its cookie: only a Vary: Cookie response is stored.
    plain = Policy(cache, 60, (), (), (200,), 1024, "p")
    bound = plain.plan(Request("GET", "/a", "", [("Cookie", "s=alice")]))
    assert bound is not None and bound.cookie_bound
    assert plain.storable_ttl(bound, 200, [], 0.0) is None
    assert plain.storable_ttl(bound, 200, [("Vary", "Accept, Cookie")], 0.0) == 60.0
