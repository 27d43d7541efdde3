"""The real services the tests, the benchmark and `make up` run, each on a free loopback port;
`rig.client` calls the admin API, `rig.probe` observes a running app from outside."""

from . import client, probe  # noqa: F401
from .services import *  # noqa: F403
from .services import __all__  # noqa: F401
