"""`serve`: parse the options, start the DICOM node, render its banner."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dcube_edge.runtimes.serve.options import ServeOptions

from .common import app, out


@app.command()
def serve(engine: Annotated[Path, typer.Argument(help="Engine directory to classify with.")],
          spool: Annotated[Path, typer.Option(help="Folder for received instances, rejected ones and the ledger.")],
          host: Annotated[str, typer.Option(help="Address to bind (non-loopback needs --token-file and --allow-ae).")] = ServeOptions.host,
          dicom_port: Annotated[int, typer.Option(min=1, max=65535, help="DICOM (C-STORE/C-ECHO) port.")] = ServeOptions.dicom_port,
          ae_title: Annotated[str, typer.Option(help="This node's AE title.")] = ServeOptions.ae_title,
          allow_ae: Annotated[str | None, typer.Option(help="Comma-separated calling AE titles to accept (default: any).")] = None,
          http_port: Annotated[int, typer.Option(min=1, max=65535, help="HTTP port (results, classify, healthz, metrics).")] = ServeOptions.http_port,
          token_file: Annotated[Path | None, typer.Option(help="File holding the HTTP bearer token.")] = None,
          max_batch: Annotated[int, typer.Option(min=1, help="Largest batch the batcher forms.")] = ServeOptions.max_batch,
          max_delay_ms: Annotated[int, typer.Option(min=0, help="Longest wait for a batch to fill.")] = ServeOptions.max_delay_ms,
          workers: Annotated[int, typer.Option(min=1, help="Threads decoding each batch's files.")] = ServeOptions.workers,
          forward: Annotated[str | None, typer.Option(help="AE@HOST:PORT of a PACS: send each result there as a DICOM SR (retried until acknowledged).")] = None,
          forward_stow: Annotated[str | None, typer.Option(help="Base URL of a DICOMweb service (e.g. http://pacs:8042/dicom-web): send each result there by STOW-RS as well.")] = None,
          max_attempts: Annotated[int, typer.Option(min=1, help="Deliveries of a result to one destination before it is dead-lettered (permanent refusals: at once).")] = ServeOptions.max_attempts,
          reclassify: Annotated[bool, typer.Option("--reclassify", help="The spool holds another engine's results: classify everything again.")] = ServeOptions.reclassify,
          trusted_key: Annotated[list[Path] | None, typer.Option("--trusted-key", help="Refuse an engine not signed by this public key.")] = None) -> None:
    """A DICOM node on the workstation: the scanner sends (C-STORE), every acknowledged instance is classified
    once and kept in a ledger; results over HTTP (needs the `serve` extra)."""
    from dcube_edge.runtimes.serve import Service
    from dcube_edge.runtimes.serve.options import parse_ae_list, parse_forward, read_token

    opts = ServeOptions(spool=spool, host=host, dicom_port=dicom_port, http_port=http_port, ae_title=ae_title,
                        allow_ae=parse_ae_list(allow_ae), token=read_token(token_file) if token_file else None,
                        max_batch=max_batch, max_delay_ms=max_delay_ms, workers=workers, reclassify=reclassify,
                        forward=parse_forward(forward) if forward else None, forward_stow=forward_stow,
                        max_attempts=max_attempts)
    service = Service(engine, opts, trusted_keys=trusted_key)
    allowed = f" (accepting {', '.join(opts.allow_ae)})" if opts.allow_ae else ""
    out.print(f"serving {engine} — DICOM {ae_title}@{host}:{dicom_port}{allowed}, HTTP http://{host}:{http_port} "
              f"— spool {spool} ({service.ledger.counts()})")
    service.run()
