"""The console's page-rendering benchmark (issue 40: a page of 50 results under 300 ms with 10,000 results in the
ledger): a ledger of N generated results (patients, accessions, study dates, decisions, one destination with a
share of dead letters; no image, no patient data), a node around it with a real engine (its classes name the
decisions) and its audit trail on, then each page asked for R times — through the WSGI application itself, and
over loopback HTTP through the node's own server (cheroot) — timed with ``perf_counter``.

``python -m dcube_edge.bench.ui_pages ENGINE [--rows 10000] [--repeats 30] [--json F]`` prints a markdown table
with the machine (CPU model and ``/proc/cpuinfo`` flags) and the date. A benchmark, not a timed test."""
from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import os
import random
import statistics
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

PAGES = (("results, newest 50", "/ui/results"), ("results, last page", "/ui/results?page={last}"),
         ("results, patient ID prefix", "/ui/results?patient_id=P01*"),
         ("results, study date range and decision", "/ui/results?date_from=2026-03-01&date_to=2026-05-31&decision={cls}"),
         ("results, dead letters", "/ui/results?state=dead"), ("deliveries (dead letters)", "/ui/deliveries"),
         ("overview", "/ui/"))
DESTINATION = "dicom:PACS@127.0.0.1:104"


def fill(ledger, rows: int, classes: list[str], seed: int = 0) -> None:
    """``rows`` classified results, received a second apart up to now; every 50th dead at the destination."""
    rng, now = random.Random(seed), time.time()
    with ledger.transaction() as db:
        for i in range(rows):
            label = rng.choice(classes)
            probs = {c: (0.6 if c == label else 0.4 / (len(classes) - 1)) for c in classes}
            when = now - rows + i
            db.execute("INSERT INTO instances (uid, path, source, received, status, label, probs, decision, engine, "
                       "classified, batch, study, patient_id, patient_name, accession, study_date, report) VALUES (?, ?, "
                       "'SCANNER@127.0.0.1', ?, 'done', ?, ?, ?, 'bench', ?, 8, ?, ?, ?, ?, ?, ?)",
                       (f"1.2.826.0.1.3680043.10.999.{i}", f"/nonexistent/{i}.dcm", when, label, json.dumps(probs),
                        json.dumps({"rule": "argmax", "explanation": f"{label}: the most probable class"}), when + 0.05,
                        f"1.2.826.0.1.3680043.10.998.{i // 4}", f"P{rng.randrange(2000):04d}", f"BENCH^PATIENT{i}",
                        f"ACC{i:06d}", f"2026{rng.randrange(1, 13):02d}{rng.randrange(1, 29):02d}",
                        f"1.2.826.0.1.3680043.10.997.{i}"))
            dead = i % 50 == 0
            db.execute("INSERT INTO deliveries (uid, destination, status, attempts, next_at, error, updated, given) "
                       "VALUES (?, ?, ?, 1, 0, ?, ?, ?)", (f"1.2.826.0.1.3680043.10.999.{i}", DESTINATION,
                                                          "dead" if dead else "delivered",
                                                          "destination answered status 0xC000" if dead else None,
                                                          when + 1, "refused" if dead else None))


def ask(app, path: str) -> tuple[int, bytes]:
    """One GET through the WSGI application, as a loopback client with no token configured would send it."""
    target, _, query = path.partition("?")
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": target, "QUERY_STRING": query, "HTTP_HOST": "127.0.0.1",
               "REMOTE_ADDR": "127.0.0.1", "HTTP_ACCEPT": "text/html", "wsgi.input": io.BytesIO(b""),
               "wsgi.url_scheme": "http", "HTTP_COOKIE": ""}
    status: list[str] = []
    body = b"".join(app(environ, lambda s, h: status.append(s)))
    return int(status[0].split()[0]), body


def timed(call, repeats: int) -> dict:
    for _ in range(3):
        call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    return {"p50_ms": statistics.median(times), "p90_ms": times[int(0.9 * (len(times) - 1))], "max_ms": times[-1]}


def bench_console(engine: Path, rows: int = 10_000, repeats: int = 30) -> dict:
    """Each page's timings (in-process and over HTTP) with ``rows`` results in the ledger."""
    from dcube_edge.runtimes import isa, load
    from dcube_edge.runtimes.serve.audit import AuditTrail
    from dcube_edge.runtimes.serve.http import HttpApi, build_server
    from dcube_edge.runtimes.serve.ledger import Ledger
    from dcube_edge.runtimes.serve.metrics import Metrics
    from dcube_edge.runtimes.serve.node import Node
    from dcube_edge.runtimes.serve.options import ServeOptions

    with tempfile.TemporaryDirectory() as tmp, load(engine) as clf:
        spool = Path(tmp)
        ledger = Ledger(spool / "ledger.sqlite")
        fill(ledger, rows, clf.classes)
        opts = ServeOptions(engine=Path(engine), spool=spool, http_port=free_port(), dicom_port=free_port())
        node = Node(opts, clf, "bench", ledger, Metrics(), destinations=(DESTINATION,),
                    audit=AuditTrail(str(spool / "audit.log"), "DCUBE"))
        node.ready.set()
        api = HttpApi(node, None)
        server = build_server(node, api)
        threading.Thread(target=server.serve, daemon=True).start()
        out = []
        try:
            for name, path in PAGES:
                path = path.format(last=-(-rows // 50), cls=clf.classes[0])
                code, body = ask(api, path)
                assert code == 200, (path, code, body[:300])
                listed = body.count(b'<a href="/ui/instances/')
                url = f"http://127.0.0.1:{opts.http_port}{path}"
                with urllib.request.urlopen(url, timeout=10) as r:  # the same page over HTTP
                    assert r.read().count(b'<a href="/ui/instances/') == listed, path
                out.append({"page": name, "path": path, "rows_listed": listed, "bytes": len(body),
                            "in_process": timed(lambda p=path: ask(api, p), repeats),
                            "http": timed(lambda u=url: urllib.request.urlopen(u, timeout=10).read(), repeats)})
        finally:
            server.stop()
            ledger.close()
    return {"rows": rows, "repeats": repeats, "date": dt.date.today().isoformat(), "load_average": os.getloadavg(),
            "machine": {"cpu": isa.cpu_model(), "flags": isa.describe(), "cores": os.cpu_count()}, "pages": out}


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def table(result: dict) -> str:
    load = ", ".join(f"{x:.1f}" for x in result["load_average"])
    lines = [f"{result['rows']:,} results in the ledger, {result['repeats']} requests per page after 3 warm-up ones; "
             f"{result['machine']['flags']}, {result['machine']['cores']} cores, load average {load}; {result['date']}.",
             "",
             "| page | rows listed | in-process p50 / p90 / max, ms | over loopback HTTP p50 / p90 / max, ms |",
             "|---|---|---|---|"]
    for p in result["pages"]:
        a, b = p["in_process"], p["http"]
        lines.append(f"| {p['page']} | {p['rows_listed']} | {a['p50_ms']:.1f} / {a['p90_ms']:.1f} / {a['max_ms']:.1f} | "
                     f"{b['p50_ms']:.1f} / {b['p90_ms']:.1f} / {b['max_ms']:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m dcube_edge.bench.ui_pages", description=__doc__.split("\n\n")[0])
    parser.add_argument("engine", type=Path, help="an engine directory (its classes name the decisions)")
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    result = bench_console(args.engine, args.rows, args.repeats)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))


if __name__ == "__main__":
    main()
