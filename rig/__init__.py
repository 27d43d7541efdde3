"""The real services the tests, the benchmark and `make up` run, each on a free loopback port
(rig.services), Zipkin from its jar (rig.traces), the app on them (rig.apps), several replicas of it
behind HAProxy (rig.replicas);
`rig.client` calls the admin API, `rig.probe` observes a running app from outside; `rig.cores`
shares the machine's cores between parallel test processes."""

from . import apps, client, probe, replicas, services, traces
from .apps import *  # noqa: F403
from .cores import cores
from .replicas import *  # noqa: F403
from .services import *  # noqa: F403
from .traces import *  # noqa: F403

__all__ = [*services.__all__, *traces.__all__, *apps.__all__, *replicas.__all__, "client", "probe", "cores"]
