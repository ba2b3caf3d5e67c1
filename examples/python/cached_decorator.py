#!/usr/bin/env python3
"""@cached: cache a slow function's results; same arguments, same entry, computed once.

Run: python3 examples/python/cached_decorator.py
"""

import threading
import time
from typing import Any, Dict

from smartcache import cached

calls = 0


@cached(ttl=600, key_prefix="user_data")
def get_user_data(user_id: int, include_profile: bool = True) -> Dict[str, Any]:
    """Pretend database query: slow, so worth caching."""
    global calls
    calls += 1
    time.sleep(0.05)
    return {"user_id": user_id, "name": f"User {user_id}", "profile": include_profile}


@cached(ttl=600, key_prefix="fibonacci")
def fibonacci(n: int) -> int:
    return n if n <= 1 else fibonacci(n - 1) + fibonacci(n - 2)


def main() -> None:
    t0 = time.perf_counter()
    get_user_data(1)
    t1 = time.perf_counter()
    get_user_data(user_id=1, include_profile=True)  # same call, keyword form: a cache hit
    t2 = time.perf_counter()
    print(f"first call {1000 * (t1 - t0):.1f} ms, second call {1000 * (t2 - t1):.3f} ms")

    # Ten threads asking for the same missing entry run the function once.
    threads = [threading.Thread(target=get_user_data, args=(2,)) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(f"get_user_data ran {calls} times for 12 calls")

    print("fibonacci(90) =", fibonacci(90))

    get_user_data.invalidate(1)    # drop one entry
    get_user_data.cache_clear()    # drop every entry this function wrote


if __name__ == "__main__":
    main()
