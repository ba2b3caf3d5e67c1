"""Must fail `mypy --strict` (test_cached_rules): wrong arguments to a @cached function."""

from __future__ import annotations

from smartcache import cached


@cached(ttl=60)
def add(a: int, b: int = 1) -> int:
    return a + b


add("one")
wrong: str = add(1)
add.invalidate("one")
add.cache_key(1, c=2)
