"""The backends one app instance talks to: the payment store and Redis.

Nothing connects at import or in create_app: pymongo, redis-py and the SQLite
backend all connect lazily, so the app starts (and /health answers) with
every database down.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis

from .config import Settings
from .store import Backend, open_backend


@dataclass
class Backends:
    """The payment store and the Redis client of one app instance."""

    store: Backend
    redis: redis.Redis
    redis_kind: str


def connect(settings: Settings) -> Backends:
    """Build clients for the configured backends (Redis's in-process stand-in where no URL is set)."""
    if settings.redis_url:
        timeout = settings.redis_timeout_ms / 1000
        # A blocking pool: a burst of threads waits briefly for a connection instead
        # of failing with "too many connections".
        pool = redis.BlockingConnectionPool.from_url(
            settings.redis_url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            decode_responses=True,
            max_connections=64,
            timeout=timeout,
        )
        rds = redis.Redis(connection_pool=pool)
        redis_kind = "redis"
    else:
        import fakeredis  # where no redis-server exists: one worker, state in-process

        rds = fakeredis.FakeRedis(decode_responses=True)
        redis_kind = "in-process"
    return Backends(store=open_backend(settings), redis=rds, redis_kind=redis_kind)
