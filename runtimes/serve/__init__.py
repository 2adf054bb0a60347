"""``dcube-edge serve``: a scanner-side DICOM node over one engine (extra ``serve``; torch-free). One module
per part: options, ledger, DICOM SCP, batcher, HTTP API, structured report, forwarder, metrics; the
service composes them (docs/serve.md)."""
from .ledger import Ledger
from .options import ServeOptions
from .service import Service

__all__ = ["Ledger", "ServeOptions", "Service"]
