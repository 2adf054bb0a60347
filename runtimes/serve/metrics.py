"""The node's Prometheus metrics (``prometheus_client``), served at ``/metrics``."""
from __future__ import annotations


class Metrics:
    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.received = Counter("dcube_instances_received", "Instances received and acknowledged", registry=self.registry)
        self.rejected = Counter("dcube_instances_rejected", "Instances refused with a failure status", registry=self.registry)
        self.classified = Counter("dcube_instances_classified", "Results written", registry=self.registry)
        self.queue = Gauge("dcube_queue_depth", "Instances waiting for a result", registry=self.registry)
        self.batches = Histogram("dcube_batch_size", "Images per engine call", registry=self.registry,
                                 buckets=(1, 2, 4, 8, 16, 32, 64))
        self.delivered = Counter("dcube_results_delivered", "Results a destination acknowledged", ["destination"],
                                 registry=self.registry)
        self.dead = Counter("dcube_results_dead_lettered", "Results a destination refused for good, or after the last "
                            "attempt", ["destination"], registry=self.registry)
        self.destination_up = Gauge("dcube_destination_up", "1 while the destination answers, 0 while it does not "
                                    "(its results wait and are retried)", ["destination"], registry=self.registry)
        self.latency = Histogram("dcube_end_to_end_seconds", "Receipt to result", registry=self.registry,
                                 buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))

    def text(self) -> tuple[bytes, str]:
        """The exposition and its content type."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST
