"""Fixtures: real Redis, FerretDB (the MongoDB wire protocol, on PostgreSQL) and Zipkin for the
session; a fresh in-process app per test (`app`, `client`); the app under real
multi-worker gunicorn (`live` on FerretDB, `live_sqlite` on the embedded SQLite file,
`any_live` either), and `own_app` for a gunicorn app a module has to itself."""

from __future__ import annotations

import sqlite3

import pytest
from pymongo import MongoClient

import rig
from app import create_app
from loadtest.checkout import initiate, verify
from rig.probe import poll_until, writes_done

# What a test runs against: in-process stand-ins only, real services, or a real browser too.
KINDS = ("unit", "services", "browser")
# Fixtures that start real services: a test that uses one cannot be a unit test.
SERVICE_FIXTURES = {"redis_service", "mongo_service", "zipkin", "own_app", "_live_apps"}


def pytest_collection_modifyitems(config, items):
    """Every test is of one kind: unmarked tests run against real services (the safe default,
    so `pytest -m unit` never starts one); a unit test that asks for a service is an error."""
    for item in items:
        kinds = {kind for kind in KINDS if item.get_closest_marker(kind)}
        if "unit" in kinds and SERVICE_FIXTURES & set(item.fixturenames):
            raise pytest.UsageError(f"{item.nodeid} is marked unit but uses a real service")
        if not kinds:  # unmarked
            item.add_marker(pytest.mark.services)
    # Longest first: under `make test`'s parallel workers (pytest-xdist, one module per worker at a
    # time, in this order: --no-loadscope-reorder) a long module started last would keep the whole
    # run waiting on it alone.
    items.sort(key=lambda item: item.get_closest_marker("long") is None)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """A `timing` test runs (fixtures included) with the cores to itself, every other test shares
    them, except a `holds_cores` test, which shares them itself while its load is heavy."""
    if item.get_closest_marker("holds_cores"):
        return (yield)
    with rig.cores(alone=item.get_closest_marker("timing") is not None):
        return (yield)


def _session_service(start):
    svc = start(rig.temp_dir(start.__name__)).start()
    yield svc
    svc.stop()


@pytest.fixture(scope="session")
def redis_service():
    """Debian's redis-server on a free port, for the whole session."""
    yield from _session_service(rig.redis_server)


@pytest.fixture(scope="session")
def mongo_service():
    """FerretDB on PostgreSQL on a free port, for the whole session."""
    yield from _session_service(rig.ferretdb)


@pytest.fixture(scope="session")
def zipkin():
    """Zipkin (rig.Zipkin: .url, .spans_endpoint for OTEL_EXPORTER_ZIPKIN_ENDPOINT, .ui_url for
    TRACES_UI_URL) from its jar on a free port, in-memory storage, for the whole session; ready
    once /health says UP, within Zipkin.START_TIMEOUT_S (a JVM on two busy cores is slow to start)."""
    svc = rig.zipkin(rig.temp_dir("zipkin")).start()
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
    application = create_app(rig.app_config(mongo_url=mongo_url, redis_url=redis_url))
    yield application
    application.extensions["paygate"].close()


@pytest.fixture
def client(app):
    """Flask's test client for `app`."""
    return app.test_client()


@pytest.fixture
def html_of(client):
    """html_of(path): the page at `path` of the in-process app, once it answered 200 with HTML."""
    def get(path: str) -> str:
        r = client.get(path)
        assert r.status_code == 200 and r.mimetype == "text/html"
        return r.get_data(as_text=True)

    return get


def touch_every_metric(application: rig.App) -> dict:
    """Flips, an initiate that misses a 50 ms deadline in `audit` (an orphan and its audit records),
    a verify, and the orphan's write run to its end: every metric has a sample. The initiate's answer."""
    application.patch_knobs(otp_timeout_ms=50)
    application.set_mode("audit")
    done = writes_done(application.url, "audit")
    body = initiate(application.url).json()
    application.reset()
    verify(application.url, "pay_" + "0" * 24, "123456")
    assert poll_until(lambda: writes_done(application.url, "audit") > done), "the orphan's write never completed"
    return body


@pytest.fixture(name="touch_every_metric")
def _touch_every_metric():
    """touch_every_metric(app) -> the orphan's initiate answer (see the function of that name)."""
    return touch_every_metric


@pytest.fixture
def auth():
    """The admin bearer header of the test apps."""
    return {"Authorization": f"Bearer {rig.TEST_TOKEN}"}


@pytest.fixture(scope="module")
def own_app(mongo_url, redis_url):
    """own_app(name, sqlite=False, workers=2, **env) -> rig.App: a gunicorn app with a database and key
    prefix of its own, started on first use, the same one for the rest of the module, stopped after it.

    A test that stops its app, or needs one untouched by the module's other tests, takes a name of its own.
    """
    started: dict[str, rig.App] = {}

    def start(name: str, sqlite: bool = False, workers: int = 2, **env) -> rig.App:
        if name not in started:
            started[name] = rig.start_app(name, None if sqlite else mongo_url, redis_url, workers=workers,
                                          extra_env=env)
        return started[name]

    yield start
    for application in started.values():
        application.service.stop()


@pytest.fixture(scope="session")
def _live_apps(mongo_url, redis_url):
    started: dict[str, rig.App] = {}
    yield lambda store: started.get(store) or started.setdefault(
        store, rig.start_app("live-" + store, mongo_url if store == "mongodb" else None, redis_url))
    for application in started.values():
        application.service.stop()


def _reset_around(application: rig.App):
    application.reset()
    yield application
    application.reset()


@pytest.fixture
def live(_live_apps):
    """The app under gunicorn (2 workers) on FerretDB, for the session; mode original, default knobs around each test."""
    yield from _reset_around(_live_apps("mongodb"))


@pytest.fixture
def live_sqlite(_live_apps):
    """The same on its own SQLite file (the `make up` default)."""
    yield from _reset_around(_live_apps("sqlite"))


@pytest.fixture(params=["mongodb", "sqlite"])
def any_live(request, _live_apps):
    """The live app on each backend in turn."""
    yield from _reset_around(_live_apps(request.param))


@pytest.fixture
def live_db(_live_apps, mongo_url):
    """The MongoDB database the live app writes to."""
    client = MongoClient(mongo_url, serverSelectionTimeoutMS=3000)
    yield client[_live_apps("mongodb").db_name]
    client.close()


@pytest.fixture
def charges_of(mongo_url):
    """count(app, payment_id): how many charges the app's store holds for a payment."""
    client = MongoClient(mongo_url, serverSelectionTimeoutMS=3000)

    def count(application, payment_id: str) -> int:
        if application.sqlite_path:
            with sqlite3.connect(application.sqlite_path) as db:
                return db.execute("SELECT COUNT(*) FROM charges WHERE payment_id = ?", (payment_id,)).fetchone()[0]
        return client[application.db_name].charges.count_documents({"_id": payment_id})

    yield count
    client.close()
