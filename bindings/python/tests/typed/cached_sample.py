"""Checked by `mypy --strict` in test_cached_rules: @cached keeps each signature."""

from __future__ import annotations

import asyncio

from smartcache import cached


@cached(ttl=60, key_prefix="typed")
def add(a: int, b: int = 1) -> int:
    return a + b


@cached
def shout(text: str) -> str:
    return text.upper()


@cached(ttl=60, refresh_ahead=0.8)
async def fetch(user_id: int) -> dict[str, int]:
    await asyncio.sleep(0)
    return {"id": user_id}


class Repo:
    @cached(ttl=60)
    def name(self, user_id: int) -> str:
        return f"user {user_id}"

    @classmethod
    @cached(ttl=60)
    def kind(cls, n: int) -> str:
        return f"{cls.__name__}:{n}"


total: int = add(1, b=2)
# The documented helpers are part of the type, with the function's parameters.
existed: bool = add.invalidate(1, b=2)
removed: int = add.cache_clear()
key: str = add.cache_key(1)
fetched_key: str = fetch.cache_key(7)
repo = Repo()
method_key: str = Repo.name.cache_key(repo, 3)
loud: str = shout("x")
name: str = Repo().name(3)
kind: str = Repo.kind(2)


async def main() -> int:
    row = await fetch(1)
    return row["id"]
