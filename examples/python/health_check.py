#!/usr/bin/env python3
"""A health endpoint's body: tier states and key statistics as JSON. Exits 1 if unhealthy.

Run: python3 examples/python/health_check.py
"""

import json
import sys

from smartcache import SmartCache, SmartCacheConfig


def health_report(cache: SmartCache) -> dict:
    health = cache.health_check()
    stats = cache.get_stats()
    return {
        "status": health["status"],
        "tiers": {name: t for name, t in health["tiers"].items() if t["enabled"]},
        "hit_ratio": f"{stats.hit_ratio:.2%}",
        "entries": stats.size,
        "memory_mb": round(stats.memory_usage, 4),
        "library_version": health["library_version"],
    }


def main() -> int:
    with SmartCache(SmartCacheConfig(memory_capacity=100)) as cache:
        cache.set("probe", "ok", ttl=5)
        assert cache.get("probe") == "ok"
        report = health_report(cache)
        print(json.dumps(report, indent=2))
        return 0 if report["status"] == "healthy" else 1


if __name__ == "__main__":
    sys.exit(main())
