"""`make up`'s trace UI: Zipkin from its jar beside the kit, or a banner line saying why not.

When `java` is on PATH, Zipkin (rig.traces) is started on ZIPKIN_PORT (9411), on the address the
app binds (0.0.0.0: the room opens it like the checkout), its memory capped, and the app is told
where to send its spans (OTEL_EXPORTER_ZIPKIN_ENDPOINT) and which UI the room opens for a trace
(TRACES_UI_URL). The JVM takes seconds to start (tens on a busy two-core machine), so it comes up
beside the app: `make up` does not wait for it, and the banner says when it is ready. The jar is
fetched once into .cache/zipkin/ by Maven; only that first run waits for it.

Not started, with the reason on the banner: TRACING=off; OTEL_EXPORTER_ZIPKIN_ENDPOINT already set
(a Zipkin of your own); no java (how to install it); no jar and no Maven to fetch it.
"""

from __future__ import annotations

import os
import shutil
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import rig
from app.lan import lan_address

# A workshop's worth of spans, honestly: the 75-minute soak ran 173,605 checkouts (39 a second) and a
# checkout is about 10 spans: 1.7 million spans, and Zipkin's in-memory store was measured at about
# 1.05 KiB a span (50,000 spans: 51 MiB of live heap over its own 35 MiB), so all of them would want
# 2 GiB. Nobody reads back an hour of traces in the room: they open the failed and the slow checkouts
# of the last minutes. 120,000 spans are the last ~5 minutes at the soak's rate (longer when the room
# is quieter); Zipkin drops the oldest traces beyond that. They take ~160 MiB of live heap in 224 MiB,
# and the JVM's RSS about 370 MiB (150,000 spans in 256 MiB measured 398 MiB).
WORKSHOP_CAPS = rig.ZipkinCaps(max_spans=120_000, heap_mib=224)
DEFAULT_PORT = 9411
INSTALL_HINT = "`sudo apt-get install default-jre-headless maven`, then `make up` again"


@dataclass
class Tracing:
    """What `make up` started for traces: the banner's line, and the server (None when not started)."""

    line: str
    server: rig.Zipkin | None = None

    def stop(self) -> None:
        """Stop Zipkin, if it was started."""
        if self.server is not None:
            self.server.stop()


def room_url(port: int, public_url: str | None, bound_to_all: bool) -> str:
    """Zipkin's UI as the room opens it: PUBLIC_URL's host, else this machine's LAN address (as the
    checkout's address on the banner), else loopback."""
    host = urlsplit(public_url).hostname if public_url else (lan_address() if bound_to_all else None)
    return f"http://{host or '127.0.0.1'}:{port}/zipkin/"


def start_tracing(env: dict, cache: Path, avoid: set[int]) -> Tracing:
    """Start Zipkin for `make up` when it can (see the module's docstring) and point the app at it
    through `env`; returns the banner's line and the server to stop."""
    label = "  traces (Zipkin)     "
    if env.get("TRACING", "").lower() == "off":
        return Tracing(label + "off (TRACING=off)")
    if env.get("OTEL_EXPORTER_ZIPKIN_ENDPOINT"):
        ui = env.get("TRACES_UI_URL") or "(set TRACES_UI_URL for the trace links)"
        return Tracing(label + f"{ui}  spans to {env['OTEL_EXPORTER_ZIPKIN_ENDPOINT']} (not started here)")
    if not shutil.which("java"):
        return Tracing(label + f"off: no `java` on PATH. To turn it on: {INSTALL_HINT}")
    jar = cache / "zipkin" / rig.traces.ZIPKIN_JAR.name
    if not jar.is_file():
        if not shutil.which("mvn"):
            return Tracing(label + f"off: Zipkin's jar is not fetched and there is no `mvn`. To turn it on: {INSTALL_HINT}")
        print(f"Fetching Zipkin {rig.ZIPKIN_VERSION} once into {jar.parent} with Maven (about a minute)...", flush=True)
        try:
            rig.traces.fetch_jar(jar)
        except (RuntimeError, OSError) as err:
            print(err, file=sys.stderr)
            return Tracing(label + "off: Maven could not fetch Zipkin's jar (see above); `make zipkin` retries")

    port = int(env.get("ZIPKIN_PORT") or DEFAULT_PORT)
    taken = ""
    if not rig.port_is_free(port):
        wanted, port = port, rig.free_port(avoid=avoid)
        taken = f"  (port {wanted} is taken: Zipkin is on {port})"
    bound_to_all = env["BIND"].startswith(("0.0.0.0", "[::]"))
    server = rig.Zipkin("zipkin", rig.traces.zipkin_argv(port, "0.0.0.0" if bound_to_all else "127.0.0.1",
                                                         WORKSHOP_CAPS, jar),
                        port, cache / "zipkin" / "run", rig.answers_zipkin, env=rig.traces.zipkin_env(WORKSHOP_CAPS))
    server.launch()
    ui = room_url(port, env.get("PUBLIC_URL"), bound_to_all)
    env["OTEL_EXPORTER_ZIPKIN_ENDPOINT"] = server.spans_endpoint
    env["TRACES_UI_URL"] = ui
    threading.Thread(target=_announce_ready, args=(server, ui), daemon=True).start()
    return Tracing(label + f"{ui}  (starting; ready when its /health says UP){taken}", server)


def _announce_ready(server: rig.Zipkin, ui: str) -> None:
    """Wait for Zipkin beside the kit and say when its UI is there, or why not."""
    try:
        server.wait_ready(timeout=float(os.environ.get("ZIPKIN_START_TIMEOUT_S", "240")))
    except RuntimeError as err:
        print(f"Zipkin did not start; the kit runs without traces.\n{err}", file=sys.stderr, flush=True)
        return
    print(f"Zipkin is ready: {ui}", flush=True)
