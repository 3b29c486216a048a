"""Load on `mlflow models serve`: latency, throughput and status codes at several concurrencies,
against the bare model's predict time measured in the same run.

    python benchmarks/serve_load.py models:/dialogue-summarizer@champion --task summarizer --workers 2 \
        --concurrency 1 8 16 --requests 100 200 1000 --params '{"max_new_tokens": 16}'
    python benchmarks/serve_load.py models:/<classifier>@champion --task classifier --workers 2
    python benchmarks/serve_load.py models:/x@champion --url http://127.0.0.1:5001   # a running server

Without --url it starts `mlflow models serve --env-manager local --workers N` on a free port
(MLFLOW_MODELS_WORKERS=N in its environment, so each worker takes cores/N torch threads; see
pipelines.runtime.serving_threads), waits for /ping and every worker, and stops it at the end.
Before the load it loads the same model in this process and times `predict` on each single input
the load will send, with the threads one server worker has. Every request carries one row; a
share of them (--malformed, default 10%) is bad JSON, a wrong column or an empty string, in turn,
and must be answered 4xx. The client is stdlib http.client, one keep-alive connection per thread.

Prints a table per concurrency (p50/p99 over the well-formed requests) and the issue's three
figures: p50@c1 / bare predict (target <= 1.5), throughput@c8 / throughput@c1 (target >= 2),
5xx at c16 (target 0; the issue counts 1,000 requests with 10% malformed). Writes everything to
benchmarks/results/serve_load-<task>-w<workers>-<time>.json (ignored by git).
"""
from __future__ import annotations

import argparse
import gc
import http.client
import itertools
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlparse

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
RESULTS = Path(__file__).parent / "results"
# The input column and the texts of each task: dialogues written for this project, and short
# product/restaurant review sentences (../shared/data, UCI; see its SOURCES.md).
TASKS = {
    "summarizer": ("dialogue", REPO / "experiments/data/dialogsum_demo/eval.jsonl", "dialogue"),
    "classifier": ("text", REPO.parent / "shared/data/uci_sentiment_sentences/amazon_yelp.jsonl", "text"),
}
MALFORMED_KINDS = ("bad_json", "wrong_field", "empty_string")


@dataclass
class Level:
    concurrency: int
    requests: int
    seconds: float
    good: int = 0
    status: dict[str, int] = field(default_factory=lambda: {"2xx": 0, "4xx": 0, "5xx": 0})
    connection_errors: int = 0
    client_cpu_seconds: float = 0.0  # the load generator shares the cores: its CPU time, shown as cores busy
    unexpected: int = 0  # a good request not answered 2xx, or a malformed one not answered 4xx
    good_latencies_ms: list[float] = field(default_factory=list, repr=False)
    errors: list[str] = field(default_factory=list)

    @property
    def p50(self) -> float:
        return statistics.median(self.good_latencies_ms) if self.good_latencies_ms else float("nan")

    @property
    def p99(self) -> float:
        lat = sorted(self.good_latencies_ms)
        return lat[min(len(lat) - 1, int(0.99 * len(lat)))] if lat else float("nan")

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds

    @property
    def good_throughput(self) -> float:
        return len(self.good_latencies_ms) / self.seconds


def fail(message: str):
    """Bad input or a server that does not come up: one line, exit code 2."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def load_texts(path: Path, text_field: str, count: int) -> list[str]:
    if not path.exists():
        fail(f"{path} not found; give texts with --data FILE.jsonl --field NAME")
    texts = [row[text_field] for row in map(json.loads, path.read_text().splitlines()) if row.get(text_field)]
    if not texts:
        fail(f"{path} has no non-empty '{text_field}' field")
    return texts[:count]


def request_bodies(column: str, texts: list[str], params: dict | None) -> dict[str, object]:
    extra = {"params": params} if params else {}
    good = [json.dumps({"dataframe_records": [{column: t}], **extra}).encode() for t in texts]
    return {
        "good": good,
        "bad_json": b'{"dataframe_records": [{"' + column.encode() + b'": "unterminated',
        "wrong_field": json.dumps({"dataframe_records": [{"no_such_column": texts[0]}]}).encode(),
        "empty_string": json.dumps({"dataframe_records": [{column: ""}], **extra}).encode(),
    }


def schedule(requests: int, malformed_share: float, seed: int) -> list[str]:
    """Which request is which: exactly round(share * n) malformed ones at random positions,
    their kinds taken in turn."""
    rng = random.Random(seed)
    bad_positions = sorted(rng.sample(range(requests), round(malformed_share * requests)))
    kinds = ["good"] * requests
    for i, pos in enumerate(bad_positions):
        kinds[pos] = MALFORMED_KINDS[i % len(MALFORMED_KINDS)]
    return kinds


def bare_predict_ms(model_uri: str, column: str, texts: list[str], params: dict | None, rounds: int) -> list[float]:
    """predict() on each single input, in this process, after one warm-up call."""
    import mlflow
    import pandas as pd

    model = mlflow.pyfunc.load_model(model_uri)
    frames = [pd.DataFrame({column: [t]}) for t in texts]
    model.predict(frames[0], params=params)
    times = []
    for frame in frames * rounds:
        started = time.perf_counter()
        model.predict(frame, params=params)
        times.append((time.perf_counter() - started) * 1000)
    del model
    gc.collect()
    return times


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ping(base: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base}/ping", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@contextmanager
def served(model_uri: str, workers: int, startup_timeout: float, log_path: Path):
    """`mlflow models serve` on a free port, up once /ping answers and every worker has started;
    its whole process group is stopped on exit."""
    port = free_port()
    env = {**os.environ, "MLFLOW_MODELS_WORKERS": str(workers), "HF_HUB_OFFLINE": "1",
           "MLFLOW_DISABLE_TELEMETRY": "true", "TOKENIZERS_PARALLELISM": "false",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    cmd = [sys.executable, "-m", "mlflow", "models", "serve", "-m", model_uri, "--env-manager", "local",
           "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
    print(f"[serve] {' '.join(cmd[1:])}  (log: {log_path})", flush=True)
    log = log_path.open("w")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base, started = f"http://127.0.0.1:{port}", time.time()
    try:
        deadline = started + startup_timeout
        # uvicorn answers /ping from the first worker up; the others may still be loading the model.
        while not (ping(base) and log_path.read_text().count("Application startup complete") >= workers):
            if proc.poll() is not None:
                fail(f"the server exited with code {proc.returncode}; see {log_path}")
            if time.time() > deadline:
                fail(f"the server was not up within {startup_timeout:.0f} s; see {log_path}")
            time.sleep(0.5)
        print(f"[serve] up on {base} after {time.time() - started:.0f} s", flush=True)
        yield base
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        log.close()


class Client:
    """One keep-alive connection (or, with `fresh`, one connection per request). A request that
    fails on a reused connection before any answer (the server closed it while idle) is retried
    once on a new one, as HTTP clients do."""

    def __init__(self, base: str, timeout: float, fresh: bool = False):
        url = urlparse(base)
        self.host, self.port, self.timeout, self.fresh = url.hostname, url.port or 80, timeout, fresh
        self.conn: http.client.HTTPConnection | None = None

    def post(self, body: bytes) -> tuple[int | None, float, str | None]:
        for _ in range(2):
            reused = self.conn is not None
            if not reused:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            started = time.perf_counter()
            try:
                self.conn.request("POST", "/invocations", body=body, headers={"Content-Type": "application/json"})
                response = self.conn.getresponse()
                response.read()
                if self.fresh:
                    self.close()
                return response.status, (time.perf_counter() - started) * 1000, None
            except (OSError, http.client.HTTPException) as err:
                self.conn.close()
                self.conn = None
                stale = isinstance(err, (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError))
                if not (reused and stale):
                    return None, (time.perf_counter() - started) * 1000, repr(err)
        raise AssertionError("unreachable")

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def run_level(base: str, concurrency: int, kinds: list[str], bodies: dict, timeout: float, fresh: bool = False) -> Level:
    counter, lock = itertools.count(), threading.Lock()
    outcomes: list[tuple[str, int | None, float, str | None]] = []

    def worker():
        client = Client(base, timeout, fresh)
        while (i := next(counter)) < len(kinds):
            kind = kinds[i]
            body = bodies["good"][i % len(bodies["good"])] if kind == "good" else bodies[kind]
            status, ms, error = client.post(body)
            with lock:
                outcomes.append((kind, status, ms, error))
        client.close()

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    started, cpu_started = time.perf_counter(), time.process_time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    level = Level(concurrency, len(kinds), time.perf_counter() - started,
                  client_cpu_seconds=time.process_time() - cpu_started)
    for kind, status, ms, error in outcomes:
        level.good += kind == "good"
        if status is None:
            level.connection_errors += 1
            level.errors.append(error)
            continue
        klass = f"{status // 100}xx"
        level.status[klass] = level.status.get(klass, 0) + 1
        if kind == "good" and klass == "2xx":
            level.good_latencies_ms.append(ms)
        elif kind == "good" or klass != "4xx":
            level.unexpected += 1
            level.errors.append(f"{kind} -> {status}")
    level.errors = level.errors[:20]
    return level


def print_table(levels: list[Level]):
    from tabulate import tabulate

    rows = [[lv.concurrency, lv.requests, lv.good, f"{lv.p50:.1f}", f"{lv.p99:.1f}", f"{lv.throughput:.2f}",
             f"{lv.good_throughput:.2f}", lv.status["2xx"], lv.status["4xx"], lv.status["5xx"],
             lv.connection_errors, lv.unexpected, f"{lv.client_cpu_seconds / lv.seconds:.2f}"] for lv in levels]
    print(tabulate(rows, headers=["conc", "requests", "good", "p50 ms", "p99 ms", "req/s", "good req/s",
                                  "2xx", "4xx", "5xx", "conn err", "unexpected", "client cores"], tablefmt="github"))


def ratios(levels: list[Level], bare_p50: float | None) -> dict[str, float | None]:
    by_c = {lv.concurrency: lv for lv in levels}
    c1, c8, c16 = by_c.get(1), by_c.get(8), by_c.get(16)
    return {
        "p50_c1_over_bare": c1.p50 / bare_p50 if c1 and bare_p50 else None,
        "throughput_c8_over_c1": c8.throughput / c1.throughput if c1 and c8 else None,
        "status_5xx_c16": c16.status["5xx"] if c16 else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model_uri", nargs="?", help="model to serve and to time bare, e.g. models:/name@champion")
    parser.add_argument("--url", help="an already running server instead of starting one")
    parser.add_argument("--task", choices=sorted(TASKS), default="summarizer")
    parser.add_argument("--workers", type=int, default=2, help="server worker processes (MLFLOW_MODELS_WORKERS)")
    parser.add_argument("--requests", type=int, nargs="+", default=[1000],
                        help="requests per concurrency level: one number for all, or one per --concurrency")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 16])
    parser.add_argument("--malformed", type=float, default=0.10, help="share of malformed requests")
    parser.add_argument("--params", type=json.loads, default=None, help='JSON params per request, e.g. \'{"max_new_tokens": 16}\'')
    parser.add_argument("--data", type=Path, help="a .jsonl of inputs (default: the task's)")
    parser.add_argument("--field", help="the text field in --data (default: the task's)")
    parser.add_argument("--pool", type=int, default=10, help="distinct inputs, sent in turn and timed bare")
    parser.add_argument("--bare-rounds", type=int, default=2, help="bare predict calls per input")
    parser.add_argument("--timeout", type=float, default=120, help="client timeout per request, s")
    parser.add_argument("--startup-timeout", type=float, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fresh-connections", action="store_true",
                        help="a new connection per request instead of keep-alive (see the README's serving notes)")
    parser.add_argument("--out-dir", type=Path, default=RESULTS, help="where the JSON and the server log go")
    args = parser.parse_args(argv)
    if not args.model_uri and not args.url:
        parser.error("give a model URI, --url of a running server, or both")
    if len(args.requests) == 1:
        args.requests *= len(args.concurrency)
    if len(args.requests) != len(args.concurrency):
        parser.error("give one --requests for all levels or one per --concurrency")
    if not 0 <= args.malformed < 1 or args.workers < 1 or min(args.requests) < 1:
        parser.error("--malformed must be in [0, 1); --workers and --requests at least 1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # The bare model takes the threads one server worker takes (pipelines.runtime.serving_threads).
    os.environ["MLFLOW_MODELS_WORKERS"] = str(args.workers)
    from pipelines.runtime import serving_threads

    column, default_data, default_field = TASKS[args.task]
    texts = load_texts(args.data or default_data, args.field or default_field, args.pool)
    bodies = request_bodies(column, texts, args.params)

    args.out_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = args.out_dir / f"serve_load-{args.task}-w{args.workers}-{stamp}.json"
    with (nullcontext(args.url) if args.url else
          served(args.model_uri, args.workers, args.startup_timeout, out.with_suffix(".log"))) as base:
        if not ping(base):
            fail(f"{base}/ping does not answer")
        # Timed while the server idles, right before the load: on a shared machine, figures
        # minutes apart are not comparable.
        bare = None
        if args.model_uri:
            print(f"[bare] predict on {len(texts)} single inputs x {args.bare_rounds}, {serving_threads()} threads",
                  flush=True)
            bare = bare_predict_ms(args.model_uri, column, texts, args.params, args.bare_rounds)
            print(f"[bare] p50 {statistics.median(bare):.1f} ms", flush=True)
        # Warm every worker (first calls pay lazy imports) before anything is timed.
        run_level(base, args.workers, ["good"] * 2 * args.workers, bodies, args.timeout, fresh=True)
        levels = []
        for c, n in zip(args.concurrency, args.requests, strict=True):
            print(f"[load] concurrency {c}: {n} requests, {args.malformed:.0%} malformed", flush=True)
            kinds = schedule(n, args.malformed, args.seed)
            levels.append(run_level(base, c, kinds, bodies, args.timeout, args.fresh_connections))

    print()
    print_table(levels)
    bare_p50 = statistics.median(bare) if bare else None
    figures = ratios(levels, bare_p50)
    print()
    print(f"bare predict p50 {bare_p50:.1f} ms ({serving_threads()} threads, as one of {args.workers} workers)"
          if bare_p50 else "bare predict: not measured (no model URI)")
    checks = [("p50@c1 / bare predict", figures["p50_c1_over_bare"], "<= 1.5", lambda v: v <= 1.5),
              ("throughput@c8 / throughput@c1", figures["throughput_c8_over_c1"], ">= 2", lambda v: v >= 2),
              ("5xx at c16", figures["status_5xx_c16"], "== 0", lambda v: v == 0)]
    for name, value, target, ok in checks:
        shown = "n/a" if value is None else (f"{value:.2f}" if isinstance(value, float) else str(value))
        verdict = "" if value is None else ("met" if ok(value) else "NOT met")
        print(f"{name:32s} {shown:>8s}  target {target:7s} {verdict}")
    c16 = next((lv for lv in levels if lv.concurrency == 16), None)
    if c16 and (c16.requests < 1000 or abs(args.malformed - 0.10) > 1e-9):
        print("note: the issue's 5xx figure is for 1,000 requests at c16 with 10% malformed")

    out.write_text(json.dumps({
        "task": args.task, "model_uri": args.model_uri, "url": args.url, "workers": args.workers,
        "threads_per_worker": serving_threads(), "cores": os.cpu_count(), "params": args.params,
        "malformed_share": args.malformed, "fresh_connections": args.fresh_connections, "pool": len(texts), "bare_predict_ms": bare,
        "bare_p50_ms": bare_p50, "figures": figures,
        "levels": [{**asdict(lv), "p50_ms": lv.p50, "p99_ms": lv.p99, "throughput": lv.throughput,
                    "good_throughput": lv.good_throughput} for lv in levels],
    }, indent=2))
    print(f"\nwritten: {out}")
    bad = any(lv.status["5xx"] or lv.connection_errors or lv.unexpected for lv in levels)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
