"""The app with its Prometheus instrumentation switched off.

The benchmark's baseline for the cost of metrics: gunicorn serves `bench.bare:app`
next to the normal app, and the same load runs against both. Every metric object
in app.metrics is replaced by one that records nothing, so every code path
(request timing, ready histogram, counters, gauges) stays as it is except the
recording itself. The app reads its metrics as module attributes at call time,
which is what makes the swap complete.
"""

from __future__ import annotations

from prometheus_client.metrics import MetricWrapperBase

from app import create_app, metrics


class _Unrecorded:
    """A metric that accepts every call and records nothing."""

    def labels(self, *args, **kwargs) -> _Unrecorded:
        return self

    def observe(self, *args, **kwargs) -> None:
        pass

    inc = dec = set = observe


for _name, _value in list(vars(metrics).items()):
    if isinstance(_value, MetricWrapperBase):
        setattr(metrics, _name, _Unrecorded())

app = create_app()
