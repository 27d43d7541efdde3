"""gunicorn settings for the kit: gthread workers, shared secrets, multiprocess metrics."""

import os
import re
import shutil
import tempfile
from pathlib import Path

from app.config import ensure_shared_secrets

bind = os.environ.get("BIND", "0.0.0.0:8000")
# gthread, with a deadline on reading each request and JSON rejections (app/worker.py).
worker_class = "app.worker.ThreadWorker"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# 40 checkout users in `original` mode must never queue for a thread, even
# with one worker (make up); the writes themselves run on a separate pool.
threads = int(os.environ.get("GUNICORN_THREADS", "64"))
timeout = 30
# Shoppers pause between checkouts; gunicorn's default of 2 s would close their
# keep-alive connections under them (clients then see a reset, not an answer).
keepalive = 75
# Long enough for writes in progress to finish and audit outboxes to flush.
graceful_timeout = 20
accesslog = os.environ.get("ACCESS_LOG") or None
wsgi_app = "app:create_app()"

# Generated once here, in the master, so every worker shares them.
_token_generated = not os.environ.get("ADMIN_TOKEN")
ensure_shared_secrets()

# prometheus_client reads this when first imported: set it before any worker loads the app.
# Unset, this kit gets a fresh directory of its own: a fixed path would be shared by two
# kits on one machine, each emptying it under the other at start.
_own_metrics_dir = None
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    _own_metrics_dir = os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="paygate-metrics-")

# The only files prometheus_client writes there: counter_<pid>.db, gauge_livemostrecent_<pid>.db, ...
METRIC_FILE = re.compile(r"(counter|histogram|summary|gauge_[a-z]+)_\d+\.db")


def on_starting(server):
    """Start from empty metric files (values from a previous run would be summed in),
    but never empty a directory that holds anything else: it is not ours."""
    path = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    try:
        path.mkdir(parents=True, exist_ok=True)
        entries = list(path.iterdir())
    except OSError as err:
        raise RuntimeError(f"PROMETHEUS_MULTIPROC_DIR={path} cannot be used: {err}") from None
    foreign = sorted(p.name for p in entries if not (p.is_file() and METRIC_FILE.fullmatch(p.name)))
    if foreign:
        # RuntimeError: gunicorn prints the message and exits with status 1, before binding.
        raise RuntimeError(
            f"PROMETHEUS_MULTIPROC_DIR={path} holds files that are not metric files "
            f"({', '.join(foreign[:5])}{', ...' if len(foreign) > 5 else ''}): refusing to empty it. "
            "Point it at an empty directory of its own, or leave it unset for a fresh one.")
    for entry in entries:
        entry.unlink()


def on_exit(server):
    """Remove the metrics directory made for this run (one named in the environment stays)."""
    if _own_metrics_dir:
        shutil.rmtree(_own_metrics_dir, ignore_errors=True)


def when_ready(server):
    """The admin token, when gunicorn generated it (run alone, without ADMIN_TOKEN): nobody else knows it.

    `make up` always hands its token over (kept in .cache/, printed in its own banner) and compose and
    the chart require one, so there this prints nothing: one banner, never a second one that disagrees.
    """
    if not _token_generated:
        return
    host = bind.rsplit(":", 1)
    url = f"http://127.0.0.1:{host[1]}" if host[0] in ("0.0.0.0", "") else f"http://{bind}"
    server.log.info("PayGate is up at %s (console %s/admin); admin token, generated for this run: %s",
                    url, url, os.environ["ADMIN_TOKEN"])


def post_worker_init(worker):
    """Warm up before taking traffic: a room arriving at once must not pay for
    creating tables or collections inside its 400 ms OTP deadline."""
    kit = getattr(worker.wsgi, "extensions", {}).get("paygate")
    if kit is None:
        return  # another WSGI app under the same settings (the benchmark's bare stub)
    try:
        kit.warm_up()
    except Exception as err:  # the store is down at start: serve anyway, /ready says so
        worker.log.warning("payment store not ready at worker start: %s", err)


def worker_exit(server, worker):
    """Graceful stop: let writes finish and flush audit outboxes before the worker goes."""
    app = getattr(worker, "wsgi", None)
    kit = getattr(app, "extensions", {}).get("paygate") if app is not None else None
    if kit is not None:
        kit.close()


def child_exit(server, worker):
    """Drop a dead worker's live gauges from the aggregated metrics."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
