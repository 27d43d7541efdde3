"""Connections to MongoDB and Redis, or their in-process stand-ins.

Nothing connects at import or in create_app: pymongo and redis-py both
connect lazily, so the app starts (and /health answers) with both down.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis
from pymongo import MongoClient
from pymongo.database import Database

from .config import Settings


@dataclass
class Backends:
    """The database handle and the Redis client one app instance uses."""

    db: Database
    redis: redis.Redis
    mongo_kind: str
    redis_kind: str


def connect(settings: Settings) -> Backends:
    """Build clients for the configured backends, stand-ins where no URL is set."""
    if settings.mongo_url:
        client = MongoClient(
            settings.mongo_url,
            serverSelectionTimeoutMS=settings.mongo_timeout_ms,
            connectTimeoutMS=settings.mongo_timeout_ms,
            socketTimeoutMS=settings.mongo_timeout_ms * 5,
            maxPoolSize=100,
            # A room arriving at once needs many connections at once (the default opens 2 at a time).
            maxConnecting=16,
            # Kept open from the start: a room's first burst must not pay for connection
            # set-up (hand-shakes to the server) inside its 400 ms OTP deadline.
            minPoolSize=40,
            uuidRepresentation="standard",
        )
        mongo_kind = "mongodb"
    else:
        import mongomock  # stand-in for the no-Docker default only

        client = mongomock.MongoClient()
        mongo_kind = "in-process"
    if settings.redis_url:
        timeout = settings.redis_timeout_ms / 1000
        # A blocking pool: a burst of threads waits briefly for a connection instead
        # of failing with "too many connections".
        pool = redis.BlockingConnectionPool.from_url(
            settings.redis_url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            decode_responses=True,
            max_connections=128,
            timeout=timeout,
        )
        rds = redis.Redis(connection_pool=pool)
        redis_kind = "redis"
    else:
        import fakeredis  # stand-in for the no-Docker default only

        rds = fakeredis.FakeRedis(decode_responses=True)
        redis_kind = "in-process"
    return Backends(db=client[settings.mongo_db], redis=rds, mongo_kind=mongo_kind, redis_kind=redis_kind)
