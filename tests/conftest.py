"""Fixtures: real Redis and a real MongoDB-wire server for the session, a fresh
app per test (`app`, `client`), and the app under real multi-worker gunicorn
(`live`)."""

from __future__ import annotations

import pytest
from pymongo import MongoClient

import rig
from app import create_app

from .helpers import unique


@pytest.fixture(scope="session")
def redis_service():
    """Debian's redis-server on a free port, for the whole session."""
    svc = rig.redis_server(rig.temp_dir("redis")).start()
    yield svc
    svc.stop()


@pytest.fixture(scope="session")
def mongo_service():
    """FerretDB (MongoDB wire protocol, SQLite backend) on a free port, for the whole session."""
    svc = rig.ferretdb(rig.temp_dir("ferretdb")).start()
    yield svc
    svc.stop()


@pytest.fixture(scope="session")
def mongo_url(mongo_service):
    return f"mongodb://127.0.0.1:{mongo_service.port}/"


@pytest.fixture(scope="session")
def redis_url(redis_service):
    return f"redis://127.0.0.1:{redis_service.port}/0"


@pytest.fixture
def app(mongo_url, redis_url):
    """A fresh app per test against the real services, isolated by database and key prefix."""
    application = create_app({"mongo_url": mongo_url, "redis_url": redis_url, "mongo_db": unique("t_"),
                              "key_prefix": unique("t:") + ":", "admin_token": rig.TEST_TOKEN,
                              "secret_key": rig.TEST_SECRET})
    yield application
    application.extensions["paygate"].close()


@pytest.fixture
def client(app):
    """Flask's test client for `app`."""
    return app.test_client()


@pytest.fixture
def auth():
    """The admin bearer header of the test apps."""
    return {"Authorization": f"Bearer {rig.TEST_TOKEN}"}


@pytest.fixture(scope="session")
def live_server(mongo_url, redis_url):
    """The app under real gunicorn with 2 workers, for the session."""
    application = rig.start_app("live", mongo_url, redis_url)
    yield application
    application.service.stop()


@pytest.fixture
def live(live_server):
    """The live app, put back to mode original with default knobs after each test."""
    live_server.reset()
    yield live_server
    live_server.reset()


@pytest.fixture
def live_db(live_server, mongo_url):
    """The MongoDB database the live app writes to."""
    client = MongoClient(mongo_url, serverSelectionTimeoutMS=3000)
    yield client[live_server.db_name]
    client.close()
