"""`serve` and `spool status | retry`: parse the options, call the library, render."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dcube_edge.runtimes.serve.options import ServeOptions

from .common import STATE, app, emit_json, err, out, to_stdout, writable

D = ServeOptions  # defaults, shown in --help; the option value None means "not given" (the config file may give it)


def default(name: str) -> str:
    return f" [default: {getattr(D, name)}]"


@app.command()
def serve(engine: Annotated[Path | None, typer.Argument(help="Engine directory to classify with (or `engine` in --config).")] = None,
          config: Annotated[Path | None, typer.Option("--config", help="TOML file with any of these options (dashes as underscores); the command line overrides it. SIGHUP re-reads its min_free, keep_days, max_attempts.")] = None,
          spool: Annotated[Path | None, typer.Option(help="Folder for received instances, rejected ones, results, the ledger and the audit log (its parent must exist).")] = None,
          host: Annotated[str | None, typer.Option(help="Address to bind (non-loopback needs --token-file and --allow-ae; use TLS)." + default("host"))] = None,
          dicom_port: Annotated[int | None, typer.Option(min=1, max=65535, help="DICOM (C-STORE/C-ECHO) port." + default("dicom_port"))] = None,
          ae_title: Annotated[str | None, typer.Option(help="This node's AE title." + default("ae_title"))] = None,
          allow_ae: Annotated[str | None, typer.Option(help="Comma-separated calling AE titles to accept (default: any; an empty list is refused).")] = None,
          any_called_ae: Annotated[bool | None, typer.Option("--any-called-ae", help="Accept associations addressed to any called AE title (default: only --ae-title; others are rejected, PS3.8 reason 7).")] = None,
          http_port: Annotated[int | None, typer.Option(min=1, max=65535, help="HTTP port (results, DICOMweb, /healthz, /readyz, /metrics)." + default("http_port"))] = None,
          token_file: Annotated[Path | None, typer.Option(help="File holding the HTTP bearer token (16+ characters).")] = None,
          tls_cert: Annotated[Path | None, typer.Option(help="PEM certificate: DICOM TLS and HTTPS (with --tls-key).")] = None,
          tls_key: Annotated[Path | None, typer.Option(help="PEM private key of --tls-cert.")] = None,
          tls_ca: Annotated[Path | None, typer.Option(help="PEM CA bundle: DICOM clients must present a certificate it signed.")] = None,
          max_batch: Annotated[int | None, typer.Option(min=1, help="Largest batch the batcher forms." + default("max_batch"))] = None,
          max_delay_ms: Annotated[int | None, typer.Option(min=0, help="Longest wait for a batch to fill." + default("max_delay_ms"))] = None,
          workers: Annotated[int | None, typer.Option(min=1, help="Threads decoding each batch's files." + default("workers"))] = None,
          forward: Annotated[str | None, typer.Option(help="AE@HOST:PORT of a PACS: each result goes there as a DICOM SR by C-STORE.")] = None,
          forward_stow: Annotated[str | None, typer.Option(help="Base URL of a DICOMweb service (e.g. http://pacs:8042/dicom-web): each result goes there by STOW-RS.")] = None,
          max_attempts: Annotated[int | None, typer.Option(min=1, help="Deliveries of a result to one destination before it is dead-lettered (refusals: at once)." + default("max_attempts"))] = None,
          accept_modality: Annotated[str | None, typer.Option(help="Comma-separated Modality values to accept, e.g. US,MG; * for any (default: what export --modality recorded, else any); others are refused with the rule named.")] = None,
          accept_sop_class: Annotated[str | None, typer.Option(help="Comma-separated SOP Class UIDs to accept (default: any).")] = None,
          accept_body_part: Annotated[str | None, typer.Option(help="Comma-separated Body Part Examined values to accept where an instance gives one (default: any).")] = None,
          min_free: Annotated[str | None, typer.Option(help="Refuse new instances (C-STORE 0xA700, HTTP 507) while the spool's disk has less free space, e.g. 5GB (B/KB/MB/GB/TB).")] = None,
          keep_days: Annotated[int | None, typer.Option(min=1, help="Delete the pixel files of instances whose results were delivered after this many days (ledger rows stay).")] = None,
          log_format: Annotated[str | None, typer.Option(help="text | json (one JSON object per line, for log shippers)." + default("log_format"))] = None,
          audit_log: Annotated[str | None, typer.Option(help="DICOM audit records (PS3.15 A.5, RFC 5424): a file, or udp://HOST:PORT of a syslog collector [default: SPOOL/audit.log].")] = None,
          reclassify: Annotated[bool | None, typer.Option("--reclassify", help="The spool holds another engine's results: classify everything again and deliver the new results.")] = None,
          trusted_key: Annotated[list[Path] | None, typer.Option("--trusted-key", help="Refuse an engine not signed by this public key.")] = None) -> None:
    """A DICOM node on the workstation: the scanner sends (C-STORE or STOW-RS), every acknowledged instance is
    classified once and kept in a ledger, results go back as DICOM SRs (needs the `serve` extra). Ctrl-C or
    SIGTERM stops it (exit 130 / 143) with what is pending kept for the next start."""
    from dcube_edge.runtimes.serve import Service, logs
    from dcube_edge.runtimes.serve.config import settings

    given = {k: v for k, v in locals().items() if k not in ("config", "settings", "logs", "Service")}
    given["engine"] = str(engine) if engine else None
    given["trusted_key"] = [str(k) for k in trusted_key] if trusted_key else None
    for key in ("spool", "token_file", "tls_cert", "tls_key", "tls_ca"):
        given[key] = str(given[key]) if given[key] else None
    engine_dir, opts, trusted = settings(config, given)
    logs.configure(opts.log_format, verbose=STATE["debug"])
    service = Service(engine_dir, opts, trusted_keys=trusted or None,
                      reload=(lambda: settings(config, given)[1]) if config else None)
    code = service.run(banner=lambda text: err.print(text, highlight=False, soft_wrap=True))
    STATE["interrupt_reported"] = True  # the stop was reported with what is pending
    raise typer.Exit(code)


spool_app = typer.Typer(help="Inspect a node's spool and re-queue dead-lettered results (works while it serves).",
                        no_args_is_help=True)
app.add_typer(spool_app, name="spool")


@spool_app.command("status")
def spool_status(spool: Annotated[Path, typer.Argument(help="The node's --spool folder.")],
                 json_out: Annotated[Path | None, typer.Option("--json", help="Write the status JSON here ('-' = stdout).")] = None) -> None:
    """Instances by state, deliveries by destination and state, every dead-lettered result with its reason, sizes
    and ages."""
    writable(json_out)
    from dcube_edge import report
    from dcube_edge.runtimes.serve.spool import status

    found = status(spool)
    if not to_stdout(json_out):
        for item in report.spool(spool, found):
            out.print(item)
    emit_json(found, json_out)


@spool_app.command("retry")
def spool_retry(spool: Annotated[Path, typer.Argument(help="The node's --spool folder.")],
                uid: Annotated[str | None, typer.Option("--uid", help="Only this SOP Instance UID's dead deliveries.")] = None) -> None:
    """Put dead-lettered deliveries back in the queue (a running node picks them up within a second)."""
    from dcube_edge.runtimes.serve.spool import retry

    n = retry(spool, uid)
    out.print(f"re-queued {n} dead-lettered deliver{'y' if n == 1 else 'ies'}" + (f" of {uid}" if uid else ""))
