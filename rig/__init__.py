"""The real services the tests, the benchmark and `make up` run: each on a free loopback port."""

from .services import *  # noqa: F403
from .services import __all__  # noqa: F401
