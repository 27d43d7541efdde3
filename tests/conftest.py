"""Fixtures: real Redis and a real MongoDB-wire server for the session, a fresh
app per test (`app`, `client`), and the app under real multi-worker gunicorn
(`live` on MongoDB, `live_sqlite` on the embedded SQLite file, `any_live` either)."""

from __future__ import annotations

import sqlite3

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
    """FerretDB (MongoDB wire protocol, on PostgreSQL) on a free port, for the whole session."""
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


@pytest.fixture(scope="session")
def live_sqlite_server(redis_url):
    """The app under real gunicorn with 2 workers on its own SQLite file (the `make up` default)."""
    application = rig.start_app("live-sqlite", None, redis_url)
    yield application
    application.service.stop()


@pytest.fixture
def live_sqlite(live_sqlite_server):
    """The SQLite-backed live app, reset around each test."""
    live_sqlite_server.reset()
    yield live_sqlite_server
    live_sqlite_server.reset()


@pytest.fixture(params=["mongodb", "sqlite"])
def any_live(request):
    """The live app on each backend in turn."""
    return request.getfixturevalue("live" if request.param == "mongodb" else "live_sqlite")


@pytest.fixture
def charges_of(mongo_url):
    """count(app, payment_id): how many charges the app's store holds for a payment."""
    clients = []

    def count(application, payment_id: str) -> int:
        if application.sqlite_path:
            with sqlite3.connect(application.sqlite_path) as db:
                return db.execute("SELECT COUNT(*) FROM charges WHERE payment_id = ?", (payment_id,)).fetchone()[0]
        clients.append(MongoClient(mongo_url, serverSelectionTimeoutMS=3000))
        return clients[-1][application.db_name].charges.count_documents({"_id": payment_id})

    yield count
    for client in clients:
        client.close()
