"""What the node's parts share: the settings, the engine, the ledger, the metrics and the locks and signals
between threads. The service makes one; every part (SCP, batcher, HTTP, forwarder) is given it."""
from __future__ import annotations

import threading
from dataclasses import dataclass, field

from ..classifier import Classifier
from .ledger import Ledger
from .metrics import Metrics
from .options import ServeOptions


@dataclass
class Node:
    opts: ServeOptions
    clf: Classifier
    engine_hash: str
    ledger: Ledger
    metrics: Metrics
    destinations: tuple[str, ...] = ()  # where results are delivered (forwarder destination names)
    engine_lock: threading.Lock = field(default_factory=threading.Lock)  # an OpenVINO infer request is not thread-safe
    store_lock: threading.Lock = field(default_factory=threading.Lock)  # a UID's look-up, file and ledger row together
    stopping: threading.Event = field(default_factory=threading.Event)
    arrived: threading.Condition = field(default_factory=threading.Condition)  # a new instance is pending

    def notify_arrival(self) -> None:
        with self.arrived:
            self.arrived.notify()
