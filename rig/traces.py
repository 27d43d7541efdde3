"""Zipkin, the trace store and UI, run from its own jar (no Docker): for the tests and `make up`.

The version is pinned here and nowhere else on this side: `make zipkin` and `make up` fetch the
jar with `fetch_jar()`, and the tests hold docker-compose.yml's image and the Helm chart's tag to
ZIPKIN_VERSION. The jar is Maven Central's `io.zipkin:zipkin-server:<version>:jar:exec` (the server
with its web UI, Lens, inside), fetched once into .cache/zipkin/ by Maven (whose own ~/.m2 cache
keeps a copy for other worktrees). It runs on Debian's OpenJDK 17 with in-memory storage, capped
twice: MEM_MAX_SPANS (Zipkin drops its oldest traces beyond it) and the JVM's heap (-Xmx).

Ready when GET /health answers JSON with status UP: Zipkin's port accepts connections a while
before its storage and collectors are up.

`make zipkin` runs `fetch_jar()`.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import requests

from .services import PROBE_TIMEOUT_S, ROOT, MissingService, Service, free_port, require

__all__ = ["ZIPKIN_JAR", "ZIPKIN_VERSION", "Zipkin", "ZipkinCaps", "answers_zipkin", "fetch_jar", "zipkin", "zipkin_argv"]

ZIPKIN_VERSION = "3.6.1"
ZIPKIN_ARTIFACT = f"io.zipkin:zipkin-server:{ZIPKIN_VERSION}:jar:exec"
ZIPKIN_JAR = Path(os.environ.get("ZIPKIN_JAR", ROOT / ".cache" / "zipkin" / f"zipkin-server-{ZIPKIN_VERSION}-exec.jar"))


@dataclass(frozen=True)
class ZipkinCaps:
    """How much Zipkin may hold: spans kept in memory, and the JVM heap they live in (MiB)."""

    max_spans: int
    heap_mib: int


# The tests send a handful of traces each: a small store starts and stays small.
TEST_CAPS = ZipkinCaps(max_spans=20_000, heap_mib=128)


def fetch_jar(jar: Path = ZIPKIN_JAR) -> Path:
    """The Zipkin server jar, fetched from Maven Central by Maven the first time (MissingService
    without `mvn`, RuntimeError with Maven's output when the fetch fails)."""
    if jar.is_file():
        return jar
    mvn = require("mvn")
    jar.parent.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([mvn, "-q", "-B", "dependency:copy", f"-Dartifact={ZIPKIN_ARTIFACT}",
                           f"-DoutputDirectory={jar.parent}"], capture_output=True, text=True, timeout=900)
    if done.returncode != 0 or not jar.is_file():
        raise RuntimeError(f"mvn could not fetch {ZIPKIN_ARTIFACT}:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return jar


def zipkin_argv(port: int, host: str, caps: ZipkinCaps, jar: Path = ZIPKIN_JAR) -> list[str]:
    """The java command line of a Zipkin on host:port.

    The address is Armeria's first port entry, given whole: Spring replaces a list from the
    command line entirely, so an `ip` alone would leave the port unset (Zipkin then took a
    random one, measured) and QUERY_PORT unread.
    """
    java = require("java")
    if not jar.is_file():
        raise MissingService(f"{jar} is missing; `make zipkin` fetches it (with Maven)")
    return [java, f"-Xms{caps.heap_mib}m", f"-Xmx{caps.heap_mib}m", "-XX:+ExitOnOutOfMemoryError",
            # Two cores are shared with the app and its load: one GC thread, no concurrent GC work.
            "-XX:+UseSerialGC",
            # The quick compiler only: ready in 20 s instead of 54 s on the busy two-core machine (measured,
            # same load); a workshop's few hundred spans a second need no peak-optimised code.
            "-XX:TieredStopAtLevel=1",
            # The JVM's memory beside the heap, bounded: measured 136 MiB of RSS over a 112 MiB heap
            # holding 50,000 spans with these (and Zipkin healthy while taking 3,500 spans a second).
            "-XX:ReservedCodeCacheSize=32m", "-XX:MaxDirectMemorySize=32m", "-Xss512k",
            "-jar", str(jar),
            f"--armeria.ports[0].ip={host}", f"--armeria.ports[0].port={port}", "--armeria.ports[0].protocols[0]=http"]


def zipkin_env(caps: ZipkinCaps) -> dict[str, str]:
    """Zipkin's own settings: in-memory storage holding at most caps.max_spans spans, no self-tracing."""
    return {"STORAGE_TYPE": "mem", "MEM_MAX_SPANS": str(caps.max_spans), "SELF_TRACING_ENABLED": "false"}


def answers_zipkin(port: int) -> bool:
    """A probe: GET /health answers 200 with JSON whose status is UP (Zipkin's own readiness:
    storage and collectors up), not merely an open port or any web server's 200."""
    r = requests.get(f"http://127.0.0.1:{port}/health", timeout=PROBE_TIMEOUT_S, headers={"Connection": "close"})
    return r.status_code == 200 and r.json().get("status") == "UP"


class Zipkin(Service):
    """A running Zipkin: where the app sends its spans, where the API and the UI are."""

    # A JVM on two busy cores takes seconds to tens of seconds to answer, a restart after a fault too
    # (30 s was measured too short for one in a full test run).
    START_TIMEOUT_S = 180.0

    @property
    def url(self) -> str:
        """The base URL on loopback: /api/v2/..., /health."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def spans_endpoint(self) -> str:
        """The app's OTEL_EXPORTER_ZIPKIN_ENDPOINT: Zipkin's JSON v2 span collector."""
        return f"{self.url}/api/v2/spans"

    @property
    def ui_url(self) -> str:
        """The app's TRACES_UI_URL: the web UI's base, ending in /zipkin/."""
        return f"{self.url}/zipkin/"


def zipkin(workdir: Path, port: int | None = None, host: str = "127.0.0.1", caps: ZipkinCaps = TEST_CAPS) -> Zipkin:
    """Zipkin from the fetched jar on host:port (a free loopback port by default), in-memory storage
    capped by `caps`; MissingService without java or the jar. `Service.start()` it (it waits up to
    Zipkin.START_TIMEOUT_S)."""
    port = port or free_port()
    return Zipkin("zipkin", zipkin_argv(port, host, caps), port, workdir, answers_zipkin, env=zipkin_env(caps))

