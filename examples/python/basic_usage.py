#!/usr/bin/env python3
"""SmartCache basics: configure, set/get with TTLs, delete, and read the statistics.

Run: python3 examples/python/basic_usage.py   (after `make lib` and `pip install bindings/python`)
"""

from smartcache import SmartCache, SmartCacheConfig


def main() -> None:
    config = SmartCacheConfig(
        memory_capacity=1000,  # items kept in memory
        memory_ttl=300,        # default lifetime, seconds
    )
    with SmartCache(config) as cache:
        # Any picklable value; bytes and str are stored as they are.
        cache.set("user:1", {"name": "Ada", "roles": ["admin"]}, ttl=60)
        cache.set("greeting", "hello")
        cache.set("blob", b"\x00\x01\x02")

        print("user:1   ->", cache.get("user:1"))
        print("greeting ->", cache.get("greeting"))
        print("missing  ->", cache.get("missing", default="(default)"))

        cache.delete("greeting")
        print("greeting exists after delete:", cache.exists("greeting"))

        stats = cache.get_stats()
        print(f"Hit ratio: {stats.hit_ratio:.2%} ({stats.hits} hits, {stats.misses} misses)")
        print(f"Memory usage: {stats.memory_usage:.4f}MB in {stats.size} of "
              f"{stats.capacity} slots")
        print("Memory tier:", stats.tier_stats["memory"])


if __name__ == "__main__":
    main()
