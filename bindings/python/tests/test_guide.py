"""Every runnable example of the SmartCache guide's Python API (docs/guide.md, "Python"), as a
test.

The snippets are kept as written, with three kinds of change only: the import is
``from smartcache import ...``; web-framework parts (``@app.get``, ``request``,
``JSONResponse``) become plain functions taking the path parameter and returning the dict;
and paths/URLs that would touch shared machine state (``/tmp/catzilla_cache``,
``/var/cache/catzilla``, ``redis://localhost:6379``) become a per-test directory and the
private test Redis. Helpers the guide leaves undefined (``expensive_database_query``,
``database``, ...) are small fakes that count their calls, so the tests can assert the
caching actually happened.
"""

from __future__ import annotations

import re
import statistics
import time
from pathlib import Path
from typing import Any, Dict, List

import pytest

from smartcache import SmartCache, SmartCacheConfig, cached

from .conftest import open_or_skip, redis_url_for_config


def JSONResponse(body: Dict[str, Any]) -> Dict[str, Any]:  # noqa: N802 - stands in for the framework's
    return body


# --- Quick Start: Basic SmartCache Setup ------------------------------------------------------
@pytest.mark.parametrize("disk", [False, True], ids=["memory", "memory+disk(guide)"])
def test_basic_setup(tmp_path: Path, disk: bool) -> None:
    # The guide's config (disk_enabled=True); the memory-only variant runs in every build.
    cache_config = SmartCacheConfig(
        memory_capacity=1000,     # Store up to 1000 items in memory
        memory_ttl=300,          # 5 minutes default TTL
        compression_enabled=True,  # Enable compression for large values
        jemalloc_enabled=True,   # Optimize memory allocation
        disk_enabled=disk,       # Enable disk persistence
        disk_path=str(tmp_path / "catzilla_cache"),
    )

    cache = open_or_skip(cache_config)

    def get_cached_data(key: str) -> Dict[str, Any]:
        """Get data with SmartCache caching"""
        # Try to get from cache first
        cached_value = cache.get(f"data:{key}")

        if cached_value is not None:
            return JSONResponse({
                "data": cached_value,
                "source": "cache",
                "cache_hit": True
            })

        # Generate expensive data (simulation)
        import time
        time.sleep(0.1)  # Simulate expensive operation
        expensive_data = {
            "key": key,
            "value": f"Generated data for {key}",
            "timestamp": time.time(),
            "computation_time": "100ms"
        }

        # Store in cache for 5 minutes
        cache.set(f"data:{key}", expensive_data, ttl=300)

        return JSONResponse({
            "data": expensive_data,
            "source": "computation",
            "cache_hit": False
        })

    with cache:
        first = get_cached_data("alpha")
        assert first["source"] == "computation" and first["cache_hit"] is False
        # Served from the cache, not recomputed (the source and the unchanged timestamp say
        # so; a time bound would too, but a busy machine can stall any call past it).
        second = get_cached_data("alpha")
        assert second["source"] == "cache" and second["cache_hit"] is True
        assert second["data"] == first["data"]  # same timestamp: it really came from the cache
        assert get_cached_data("beta")["cache_hit"] is False


# --- Quick Start: Cache Decorator -------------------------------------------------------------
def test_cached_get_user_data(default_cache: SmartCache) -> None:
    computed: List[int] = []

    @cached(ttl=600, key_prefix="user_data")
    def get_user_data(user_id: int) -> Dict[str, Any]:
        """Expensive user data retrieval with caching"""
        computed.append(user_id)
        # Simulate database query
        import time
        time.sleep(0.05)

        return {
            "user_id": user_id,
            "name": f"User {user_id}",
            "email": f"user{user_id}@example.com",
            "profile": {
                "created_at": "2023-01-01",
                "last_active": time.time()
            }
        }

    def get_user(user_id_text: str) -> Dict[str, Any]:
        """Get user with automatic caching"""
        user_id = int(user_id_text)
        user_data = get_user_data(user_id)

        return JSONResponse({
            "user": user_data,
            "cached": True  # Automatically cached by decorator
        })

    first = get_user("7")
    again = get_user("7")
    # Counted, not timed (a busy machine can stall a cached call past any small bound).
    assert computed == [7]
    assert again == first  # identical last_active: served from the cache
    assert first["user"]["email"] == "user7@example.com"
    assert get_user("8")["user"]["user_id"] == 8
    assert get_user_data.__doc__ == "Expensive user data retrieval with caching"
    assert default_cache.get_stats().hits >= 1


# --- Multi-Tier SmartCache: Configure Multi-Tier Cache ----------------------------------------
def test_multi_tier_config(tmp_path: Path, unique_prefix: str) -> None:
    # Configure multi-tier cache with all layers
    cache_config = SmartCacheConfig(
        # Memory Cache (L1) - Ultra-fast C-level cache
        memory_capacity=5000,
        memory_ttl=300,  # 5 minutes
        compression_enabled=True,
        jemalloc_enabled=True,

        # Redis Cache (L2) - Distributed cache
        redis_enabled=True,
        redis_url=redis_url_for_config(),
        redis_ttl=1800,  # 30 minutes
        redis_key_prefix=unique_prefix,

        # Disk Cache (L3) - Persistent cache
        disk_enabled=True,
        disk_path=str(tmp_path / "catzilla_cache"),
        disk_ttl=3600,  # 1 hour

        # Performance settings
        enable_stats=True,
        auto_expire_interval=60,
    )

    # Create SmartCache with multi-tier configuration
    cache = open_or_skip(cache_config)
    calls: List[str] = []

    def generate_complex_computation(key: str) -> Dict[str, Any]:
        """Simulate expensive computation"""
        import time
        calls.append(key)
        time.sleep(0.2)  # Simulate 200ms computation

        return {
            "key": key,
            "result": f"Complex result for {key}",
            "computed_at": time.time(),
            "computation_cost": "expensive"
        }

    def get_multilayer_data(key: str) -> Dict[str, Any]:
        """Data retrieval with multi-tier caching"""
        cache_key = f"complex_data:{key}"

        # Cache will automatically check tiers in order: Memory → Redis → Disk
        cached_data = cache.get(cache_key)

        if cached_data:
            return JSONResponse({
                "data": cached_data,
                "cache_tier": "multi_tier",
                "cache_hit": True
            })

        # Generate complex data
        complex_data = generate_complex_computation(key)

        # Store in cache (will be stored across all available tiers)
        cache.set(cache_key, complex_data, ttl=3600)  # 1 hour

        return JSONResponse({
            "data": complex_data,
            "cache_tier": "none",
            "cache_hit": False
        })

    with cache:
        assert get_multilayer_data("x")["cache_hit"] is False
        assert get_multilayer_data("x")["cache_hit"] is True
        assert calls == ["x"]
        health = cache.health_check()
        assert health["tiers"]["redis"]["enabled"] and health["tiers"]["disk"]["enabled"]


# --- Cache Strategies -------------------------------------------------------------------------
class FakeDatabase:
    def __init__(self) -> None:
        self.rows: Dict[str, Any] = {}
        self.reads = 0

    def save(self, key: str, data: Any) -> None:
        self.rows[key] = data

    def update_user(self, user_id: int, data: Dict[str, Any]) -> None:
        self.rows[f"user:{user_id}"] = data


def test_cache_strategies(cache: SmartCache) -> None:
    database = FakeDatabase()
    queries: List[str] = []

    def expensive_database_query(key: str) -> Dict[str, Any]:
        queries.append(key)
        return {"key": key, "rows": [1, 2, 3]}

    def fetch_data_for_key(key: str) -> Dict[str, Any]:
        return {"warm": key}

    # Cache-Aside Pattern (Most Common)
    def cache_aside_example(key: str) -> Dict[str, Any]:
        """Cache-aside pattern with SmartCache"""
        cache_key = f"aside:{key}"

        # 1. Try cache first
        cached = cache.get(cache_key)
        if cached:
            return JSONResponse({"data": cached, "strategy": "cache_aside", "hit": True})

        # 2. Cache miss - fetch from source
        data = expensive_database_query(key)

        # 3. Store in cache for next time
        cache.set(cache_key, data, ttl=300)

        return JSONResponse({"data": data, "strategy": "cache_aside", "hit": False})

    # Write-Through Pattern
    def write_through_example(key: str, data: Dict[str, Any]) -> Dict[str, Any]:
        """Write-through pattern with SmartCache"""
        # 1. Write to database
        database.save(key, data)

        # 2. Immediately write to cache
        cache.set(f"writethrough:{key}", data, ttl=600)

        return JSONResponse({"message": "Data saved", "strategy": "write_through"})

    # Cache Warming
    def warm_cache() -> str:
        """Proactively populate cache with frequently accessed data"""
        popular_keys = ["user:1", "user:2", "user:3", "config:app"]

        for key in popular_keys:
            if not cache.get(key):
                data = fetch_data_for_key(key)
                cache.set(key, data, ttl=1800)  # 30 minutes

        return f"Warmed {len(popular_keys)} cache entries"

    assert cache_aside_example("k1")["hit"] is False
    assert cache_aside_example("k1") == {"data": {"key": "k1", "rows": [1, 2, 3]},
                                         "strategy": "cache_aside", "hit": True}
    assert queries == ["k1"]

    assert write_through_example("w", {"v": 1})["strategy"] == "write_through"
    assert database.rows["w"] == {"v": 1} and cache.get("writethrough:w") == {"v": 1}

    cache.set("user:2", {"already": "there"})
    assert warm_cache() == "Warmed 4 cache entries"
    assert cache.get("user:1") == {"warm": "user:1"}
    assert cache.get("user:2") == {"already": "there"}  # not refetched
    assert cache.get("config:app") == {"warm": "config:app"}


# --- Performance Optimization: Cache Analytics ------------------------------------------------
def test_cache_analytics(cache: SmartCache) -> None:
    cache.set("a", 1)
    cache.get("a")
    cache.get("a")
    cache.get("missing")

    def get_cache_analytics() -> Dict[str, Any]:
        """Get detailed cache performance analytics"""

        # Get comprehensive cache statistics
        stats = cache.get_stats()
        health = cache.health_check()

        return JSONResponse({
            "performance": {
                "hit_ratio": f"{stats.hit_ratio:.2%}",
                "total_hits": stats.hits,
                "total_misses": stats.misses,
                "operations_per_second": stats.ops_per_second
            },
            "memory_usage": {
                "current_usage": f"{stats.memory_usage:.2f}MB",
                "capacity": f"{stats.capacity} items",
                "size": stats.size,
                "compression_ratio": f"{stats.compression_ratio:.2f}x"
            },
            "tier_performance": {
                "memory": stats.tier_stats.get("memory", {}),
                "redis": stats.tier_stats.get("redis", {}),
                "disk": stats.tier_stats.get("disk", {})
            },
            "health": health,
            "jemalloc_enabled": cache.config.jemalloc_enabled
        })

    out = get_cache_analytics()
    assert out["performance"]["hit_ratio"] == "66.67%"
    assert out["performance"]["total_hits"] == 2 and out["performance"]["total_misses"] == 1
    assert isinstance(out["performance"]["operations_per_second"], float)
    assert out["memory_usage"]["current_usage"].endswith("MB")
    assert re.fullmatch(r"\d+\.\d\dMB", out["memory_usage"]["current_usage"])
    assert cache.get_stats().memory_bytes > 0  # one small entry: well under 0.01 MB
    assert out["memory_usage"]["capacity"] == "10000 items"
    assert out["memory_usage"]["size"] == 1
    assert out["memory_usage"]["compression_ratio"] == "1.00x"
    assert out["tier_performance"]["memory"]["hits"] == 2
    assert out["tier_performance"]["redis"]["enabled"] is False
    assert out["health"]["healthy"] is True
    assert out["jemalloc_enabled"] is True


# --- Cache Warming ----------------------------------------------------------------------------
def test_cache_warming_on_startup(cache: SmartCache, capsys: pytest.CaptureFixture[str]) -> None:
    def get_app_settings() -> Dict[str, Any]:
        return {"theme": "dark"}

    def get_feature_flags() -> Dict[str, bool]:
        return {"beta": True}

    def get_top_users(n: int) -> List[int]:
        return list(range(n))

    def get_daily_statistics() -> Dict[str, int]:
        return {}  # nothing yet today: "if data" skips it

    def get_user_from_database(user_id: int) -> Dict[str, Any]:
        if user_id == 25:
            raise LookupError("user 25 was deleted")
        return {"id": user_id}

    def warm_cache_on_startup() -> int:
        """Warm cache with popular data during application startup"""

        # Popular data that should always be cached
        popular_data = {
            "config:app_settings": get_app_settings(),
            "config:feature_flags": get_feature_flags(),
            "users:top_100": get_top_users(100),
            "analytics:daily_stats": get_daily_statistics()
        }

        warmed_count = 0
        for cache_key, data in popular_data.items():
            if data:  # Only cache if data is valid
                cache.set(cache_key, data, ttl=1800)  # 30 minutes
                warmed_count += 1

        print(f"🔥 Cache warmed with {warmed_count} entries")
        return warmed_count

    def warm_user_data(user_ids: list) -> None:
        """Warm cache with specific user data"""
        for user_id in user_ids:
            try:
                user_data = get_user_from_database(user_id)
                cache.set(f"user:{user_id}", user_data, ttl=600)
            except Exception as e:
                print(f"Failed to warm user {user_id}: {e}")

    # Warm cache during application startup (the guide's @app.on_startup hook)
    def startup_cache_warming() -> None:
        warm_cache_on_startup()

        # Warm popular user data
        popular_user_ids = [1, 5, 10, 25, 50]  # Could come from analytics
        warm_user_data(popular_user_ids)

    startup_cache_warming()
    out = capsys.readouterr().out
    assert "🔥 Cache warmed with 3 entries" in out
    assert "Failed to warm user 25: user 25 was deleted" in out
    assert cache.get("users:top_100") == list(range(100))
    assert not cache.exists("analytics:daily_stats")
    assert [cache.get(f"user:{i}") for i in (1, 5, 10, 25, 50)] == \
        [{"id": 1}, {"id": 5}, {"id": 10}, None, {"id": 50}]


# --- Cache Key Design -------------------------------------------------------------------------
def test_cache_key_builder(cache: SmartCache) -> None:
    # Cache key best practices
    class CacheKeyBuilder:
        @staticmethod
        def user_key(user_id: int) -> str:
            return f"user:{user_id}"

        @staticmethod
        def user_posts_key(user_id: int, page: int = 1) -> str:
            return f"user:{user_id}:posts:page:{page}"

        @staticmethod
        def search_key(query: str, filters: dict = None) -> str:  # type: ignore[assignment]
            """Create cache key for search results"""
            base_key = f"search:{query.lower().replace(' ', '_')}"

            if filters:
                # Sort filters for consistent key generation
                filter_str = ":".join(f"{k}_{v}" for k, v in sorted(filters.items()))
                return f"{base_key}:{filter_str}"

            return base_key

    assert CacheKeyBuilder.user_key(3) == "user:3"
    assert CacheKeyBuilder.user_posts_key(3) == "user:3:posts:page:1"
    k1 = CacheKeyBuilder.search_key("Red Shoes", {"size": 42, "color": "red"})
    k2 = CacheKeyBuilder.search_key("red shoes", {"color": "red", "size": 42})
    assert k1 == k2 == "search:red_shoes:color_red:size_42"
    cache.set(k1, ["result"])
    assert cache.get(k2) == ["result"]
    assert CacheKeyBuilder.search_key("x") == "search:x"


# --- Performance Benchmarking -----------------------------------------------------------------
def benchmark_cache_performance(cache, num_operations=1000):  # type: ignore[no-untyped-def]
    """Benchmark SmartCache performance"""

    # Test data
    test_data = {"benchmark": "data", "value": list(range(100))}

    # Benchmark SET operations
    set_times = []
    for i in range(num_operations):
        start = time.time()
        cache.set(f"benchmark_key_{i}", test_data, ttl=60)
        set_times.append((time.time() - start) * 1000)  # Convert to ms

    # Benchmark GET operations (should be cache hits)
    get_times = []
    for i in range(num_operations):
        start = time.time()
        result = cache.get(f"benchmark_key_{i}")
        get_times.append((time.time() - start) * 1000)  # Convert to ms

    # Calculate statistics
    return {
        "set_operations": {
            "count": num_operations,
            "avg_time_ms": statistics.mean(set_times),
            "min_time_ms": min(set_times),
            "max_time_ms": max(set_times),
            "ops_per_second": 1000 / statistics.mean(set_times)
        },
        "get_operations": {
            "count": num_operations,
            "avg_time_ms": statistics.mean(get_times),
            "min_time_ms": min(get_times),
            "max_time_ms": max(get_times),
            "ops_per_second": 1000 / statistics.mean(get_times)
        }
    }


def test_benchmark_cache_performance() -> None:
    # Sub-millisecond means are the guide's claim, but a busy machine can stall one run for a
    # second; a systematically slow call is slow in every run, so the run is repeated (up to
    # three times, on a fresh cache) before that check fails.
    for attempt in range(3):
        if _benchmark_once(last=attempt == 2):
            return


def _benchmark_once(last: bool) -> bool:
    # The guide's basic setup holds 1000 items; its benchmark writes exactly 1000 and expects
    # every get to hit, so memory_capacity must bound the whole cache, not each shard.
    cache = SmartCache(SmartCacheConfig(memory_capacity=1000))

    def run_cache_benchmark() -> Dict[str, Any]:
        """Run cache performance benchmark"""

        results = benchmark_cache_performance(cache, num_operations=1000)

        return JSONResponse({
            "benchmark_results": results,
            "cache_config": {
                "memory_capacity": cache.config.memory_capacity,
                "compression_enabled": cache.config.compression_enabled,
                "jemalloc_enabled": cache.config.jemalloc_enabled
            },
            "recommendation": "SmartCache with C-acceleration provides sub-millisecond performance"
        })

    with cache:
        out = run_cache_benchmark()
        res = out["benchmark_results"]
        assert res["set_operations"]["count"] == res["get_operations"]["count"] == 1000
        # time.time() has coarse resolution, so the mean can be 0 on a fast machine; the guide
        # divides by it. Sub-millisecond is the guide's claim, checked here.
        fast = (res["get_operations"]["avg_time_ms"] < 1.0
                and res["set_operations"]["avg_time_ms"] < 1.0)
        if last:
            assert res["get_operations"]["avg_time_ms"] < 1.0
            assert res["set_operations"]["avg_time_ms"] < 1.0
        assert out["cache_config"] == {"memory_capacity": 1000, "compression_enabled": True,
                                       "jemalloc_enabled": True}
        stats = cache.get_stats()
        assert stats.hits == 1000 and stats.misses == 0 and stats.size == 1000
        assert cache.get("benchmark_key_999") == {"benchmark": "data", "value": list(range(100))}
    return fast


# --- Best Practices: production config --------------------------------------------------------
def test_production_config(tmp_path: Path, unique_prefix: str) -> None:
    # Production-ready cache configuration
    production_cache_config = SmartCacheConfig(
        # Memory tier - for hot data
        memory_capacity=10000,        # Adjust based on available RAM
        memory_ttl=300,              # 5 minutes for hot data

        # Redis tier - for distributed caching
        redis_enabled=True,
        redis_url=redis_url_for_config(),
        redis_ttl=1800,              # 30 minutes
        redis_key_prefix=unique_prefix,

        # Disk tier - for cold data persistence
        disk_enabled=True,
        disk_path=str(tmp_path / "catzilla"),
        disk_ttl=86400,              # 24 hours

        # Performance optimizations
        compression_enabled=True,     # Reduce memory usage
        jemalloc_enabled=True,       # Optimize memory allocation
        enable_stats=True,           # Monitor performance
        auto_expire_interval=60      # Clean expired items every minute
    )
    # Construction validated every field against the library's parser already.
    assert production_cache_config.disk_ttl == 86400
    cache = open_or_skip(production_cache_config)
    with cache:
        cache.set("p", {"ok": True})
        assert cache.get("p") == {"ok": True}


# --- Common Patterns --------------------------------------------------------------------------
def test_common_patterns(default_cache: SmartCache) -> None:
    cache = default_cache
    fib_calls = 0

    # Pattern 1: Function-level caching for expensive computations
    @cached(ttl=600, key_prefix="fibonacci")
    def fibonacci(n: int) -> int:
        nonlocal fib_calls
        fib_calls += 1
        if n <= 1:
            return n
        return fibonacci(n-1) + fibonacci(n-2)

    t0 = time.perf_counter()
    assert fibonacci(80) == 23416728348467685
    # Uncached this would never finish (~1e16 calls); generous for a busy machine.
    assert time.perf_counter() - t0 < 30.0
    assert fib_calls == 81  # each n computed exactly once
    assert fibonacci(80) == 23416728348467685 and fib_calls == 81

    class ExternalWeatherApi:
        calls = 0

        def get(self, city: str) -> Dict[str, Any]:
            self.calls += 1
            return {"city": city, "temperature": 72, "condition": "sunny"}

    external_weather_api = ExternalWeatherApi()
    database = FakeDatabase()

    # Pattern 2: Manual caching for external API calls
    def get_weather(city: str) -> Dict[str, Any]:
        cache_key = f"weather:{city}"

        # Try cache first
        weather = cache.get(cache_key)
        if weather:
            return weather

        # Fetch from API
        weather = external_weather_api.get(city)

        # Cache for 30 minutes
        cache.set(cache_key, weather, ttl=1800)

        return weather

    # Pattern 3: Cache invalidation
    def update_user(user_id: int, data: dict) -> None:
        # Update database
        database.update_user(user_id, data)

        # Invalidate related cache entries
        cache.delete(f"user:{user_id}")
        cache.delete(f"user:{user_id}:posts")
        cache.delete(f"user:{user_id}:profile")

    assert get_weather("Oslo") == get_weather("Oslo")
    assert external_weather_api.calls == 1

    for suffix in ("", ":posts", ":profile"):
        cache.set(f"user:5{suffix}", {"stale": True})
    cache.set("user:6", {"other": True})
    update_user(5, {"name": "new"})
    assert database.rows["user:5"] == {"name": "new"}
    assert not any(cache.exists(f"user:5{s}") for s in ("", ":posts", ":profile"))
    assert cache.get("user:6") == {"other": True}


# --- Troubleshooting: debug_cache_health ------------------------------------------------------
def test_debug_cache_health(cache: SmartCache, capsys: pytest.CaptureFixture[str]) -> None:
    cache.set("k", "v")
    cache.get("k")
    cache.get("nope")

    # Debug cache performance
    def debug_cache_health() -> None:
        stats = cache.get_stats()
        health = cache.health_check()

        print(f"Hit Ratio: {stats.hit_ratio:.2%}")
        print(f"Memory Usage: {stats.memory_usage:.2f}MB")
        print(f"Operations/sec: {stats.ops_per_second}")
        print(f"Health Status: {health}")

        if stats.hit_ratio < 0.8:
            print("⚠️  Consider increasing TTL values")

        if stats.memory_usage > 100:
            print("⚠️  Consider enabling compression or reducing capacity")

    debug_cache_health()
    out = capsys.readouterr().out
    assert "Hit Ratio: 50.00%" in out
    assert "Memory Usage: 0.00MB" in out
    assert "Health Status: {'healthy': True" in out
    assert "Consider increasing TTL values" in out
    assert "reducing capacity" not in out
