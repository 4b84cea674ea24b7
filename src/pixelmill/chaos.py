"""The chaos harness: pixelmill's multi-process layout under faults, and the promises checked after.

It starts PostgreSQL-backed API and worker processes on S3-compatible storage (a moto server
behind a TCP gate that can be shut), a webhook receiver that is sometimes slow, down or endless,
and submits mixed tasks from concurrent clients (imagine, upscale, variation, a batch, cancels,
faults on purpose, idempotent re-sends after connection errors). Meanwhile it SIGKILLs a random
API or worker process every few seconds and restarts it, restarts PostgreSQL once (or drops all
its connections), shuts the storage for a while, and runs one worker with its clock 60 s ahead.
Afterwards ``Report`` says what was lost, doubled, charged wrongly, delivered out of order or
undownloadable. ``bench/chaos.py`` runs it at scale and prints the report; the test suite runs
it small and asserts it clean.

Needs the postgres and s3 extras, PostgreSQL on 127.0.0.1:5432 (trust auth) and, for the real
restart, ``pg_ctlcluster`` run as a user allowed to restart the cluster.
"""

from __future__ import annotations

import collections
import json
import os
import random
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, text

from pixelmill.testing import Server, free_port, wait_for

KEY = "pm_chaos_" + "c" * 32
IMAGINE = "/v1/midjourney/generations/imagine"
FAULTS = [
    {"match": "flaky", "times": 1, "retryable": True, "error": "upstream timed out (chaos)"},
    {"match": "broken", "retryable": False, "error": "model refused the input (chaos)"},
]


@dataclass
class Config:
    tasks: int = 1000
    clients: int = 8
    api_processes: int = 2
    worker_processes: int = 3
    #: Seconds between SIGKILLs of a random API or worker process (each restarted at once).
    kill_every: float = 4.0
    #: "restart": restart the PostgreSQL cluster once; "terminate": drop every connection of the
    #: chaos database once (what a restart does to clients, without touching other databases).
    postgres_fault: str = "restart"
    storage_outage_seconds: float = 10.0
    #: After the chaos stops, how long every accepted task has to end.
    deadline_seconds: float = 300.0
    seed: int = 2026
    admin_url: str = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


@dataclass
class Report:
    accepted: int = 0
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    charged_twice: list[str] = field(default_factory=list)
    refunds_wrong: list[str] = field(default_factory=list)
    balances_equal_ledgers: bool = False
    webhook_events: int = 0
    webhook_out_of_order: list[str] = field(default_factory=list)
    webhook_unstable_ids: list[str] = field(default_factory=list)
    undownloadable: list[str] = field(default_factory=list)
    errors_5xx_outside_windows: list[str] = field(default_factory=list)
    worker_thread_deaths: int = 0
    submit_p99_ms: float = 0.0
    kills: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    #: Why tasks failed, most common first (failures on purpose are among them).
    fail_reasons: dict[str, int] = field(default_factory=dict)

    @property
    def clean(self) -> bool:
        return not (self.lost or self.duplicated or self.charged_twice or self.refunds_wrong or self.webhook_out_of_order
                    or self.webhook_unstable_ids or self.undownloadable or self.errors_5xx_outside_windows
                    or self.worker_thread_deaths) and self.balances_equal_ledgers

    def lines(self) -> list[str]:
        def n(items: list[str]) -> str:
            return f"{len(items)}" + (f"  e.g. {items[:3]}" if items else "")

        return [
            f"accepted tasks              {self.accepted}   ({', '.join(f'{k} {v}' for k, v in sorted(self.statuses.items()))})",
            *(f"  failed: {count} × {reason}" for reason, count in list(self.fail_reasons.items())[:6]),
            f"lost (not final in time)    {n(self.lost)}",
            f"duplicated logical submits  {n(self.duplicated)}",
            f"charged twice               {n(self.charged_twice)}",
            f"refunds not exactly once    {n(self.refunds_wrong)}",
            f"balances equal ledgers      {'yes' if self.balances_equal_ledgers else 'NO'}",
            f"webhook events delivered    {self.webhook_events}",
            f"  out of order per task     {n(self.webhook_out_of_order)}",
            f"  ids not stable            {n(self.webhook_unstable_ids)}",
            f"undownloadable files        {n(self.undownloadable)}",
            f"5xx outside restart windows {n(self.errors_5xx_outside_windows)}",
            f"worker thread deaths        {self.worker_thread_deaths}",
            f"submit p99                  {self.submit_p99_ms:.0f} ms",
            f"processes killed            {self.kills}",
        ]


class TcpGate:
    """A TCP forwarder on loopback that can be shut (connections refused, open ones cut) and
    opened again on the same port: storage that is unreachable for a while."""

    def __init__(self, target_port: int) -> None:
        self.target = target_port
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()

    def open(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def shut(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            conns, self._conns = self._conns, []
        if listener is not None:
            listener.close()
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()


class Receiver:
    """Webhook receiver: one in eight answers is slow (2 s), one in eight 503, one in sixteen an
    endless 200; the rest 204. Records what it answered 2xx to."""

    def __init__(self, seed: int) -> None:
        self.delivered: list[tuple[str, str, int]] = []  # (webhook-id, task id, sequence)
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with outer._lock:
                    roll = outer._random.random()
                if roll < 1 / 8:
                    time.sleep(2)
                if 1 / 8 <= roll < 2 / 8:
                    self.send_response(503)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                payload = json.loads(body)
                with outer._lock:
                    outer.delivered.append((self.headers["webhook-id"], payload["data"]["task_id"], payload["sequence"]))
                if 2 / 8 <= roll < 2 / 8 + 1 / 16:
                    self.send_response(200)
                    self.send_header("Content-Length", str(10**12))
                    self.end_headers()
                    try:
                        while True:
                            self.wfile.write(b"x" * 65536)
                    except OSError:
                        return
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: object) -> None:
                pass

        class Quiet(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: object, client_address: object) -> None:
                pass  # senders killed mid-request (the chaos) reset connections: expected, not news

        self.httpd = Quiet(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hooks"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


class Worker:
    """A ``pixelmill worker`` process with the same settings as the API processes."""

    def __init__(self, api: Server, index: int, **env: str) -> None:
        self.api, self.index, self.env = api, index, env
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = self.api.data_dir / f"worker-{self.index}.log"
        with open(log, "ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "pixelmill", "worker"], env=self.api.environ() | self.env,
                                         stdout=out, stderr=subprocess.STDOUT)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


@dataclass
class Submitted:
    """One logical submit: its nonce (unique in its prompt), the task ids answered, and the key."""

    nonce: str
    kind: str
    task_ids: list[str] = field(default_factory=list)


class Harness:
    def __init__(self, config: Config, work_dir: Path) -> None:
        self.config = config
        self.dir = work_dir
        self.random = random.Random(config.seed)
        self.windows: list[tuple[float, float]] = []  # times when 5xx / connection errors are expected
        self.answers: list[tuple[float, int, str]] = []  # (time, status, what)
        self.latencies: list[float] = []
        self.submitted: list[Submitted] = []
        self.lock = threading.Lock()
        self.apis: list[Server] = []
        self.workers: list[Worker] = []
        self.stop_chaos = threading.Event()
        self.kills = 0

    # --- set-up ---------------------------------------------------------------------------------

    @contextmanager
    def running(self) -> Iterator[None]:
        with ExitStack() as stack:
            self.db_url = self._database(stack)
            s3 = self._storage(stack)
            self.receiver = Receiver(self.config.seed)
            stack.callback(self.receiver.httpd.server_close)
            stack.callback(self.receiver.httpd.shutdown)  # callbacks run last first: shut down, then close
            env: dict[str, Any] = {
                "database_url": self.db_url, "storage": "s3", "s3_bucket": "chaos", "s3_endpoint_url": s3, "s3_region": "us-east-1",
                "workers": 0, "rate_per_minute": 0, "max_concurrent_tasks": 0, "fetch_allow": '["127.0.0.1/32"]', "screening": "off",
                "fault_injection": json.dumps(FAULTS), "retry_backoff_seconds": "[1, 4, 16]", "max_attempts": 4,
                "lease_seconds": 6, "sweep_interval_seconds": 0.5, "webhook_retry_seconds": "[0.5, 1, 2, 4, 8, 16]",
                "webhook_timeout_seconds": 3, "idempotency_pending_seconds": 5, "interactive_queue_limit": 100000,
            }
            for i in range(self.config.api_processes):
                api = Server(self.dir / f"api-{i}", KEY, **env)
                self.apis.append(api)
                api.start()
                stack.callback(api.stop)
            for i in range(self.config.worker_processes):
                skew = {"PIXELMILL_FAULT_CLOCK_SKEW_SECONDS": "60"} if i == 0 else {}
                worker = Worker(self.apis[0], i, PIXELMILL_WORKERS="2", **skew)
                self.workers.append(worker)
                worker.start()
                stack.callback(worker.stop)
            engine = create_engine(self.db_url)
            with engine.connect() as conn:
                key_id = conn.execute(text("SELECT id FROM api_keys")).scalar_one()
            engine.dispose()
            with httpx.Client(base_url=self.apis[0].url, headers={"Authorization": f"Bearer {KEY}"}) as admin:
                # A limited key: its balance must equal the sum of its ledger at the end.
                admin.put(f"/v1/admin/keys/{key_id}/balance", json={"balance": 10**7}).raise_for_status()
            yield

    def _database(self, stack: ExitStack) -> str:
        admin = create_engine(self.config.admin_url, isolation_level="AUTOCOMMIT")
        name = f"pixelmill_chaos_{secrets.token_hex(4)}"
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))

        def drop() -> None:
            wait_for(lambda: _answers_sql(admin), timeout=60, what="PostgreSQL back up")
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()

        stack.callback(drop)
        self.admin = admin
        self.db_name = name
        return self.config.admin_url.rsplit("/", 1)[0] + f"/{name}"

    def _storage(self, stack: ExitStack) -> str:
        import boto3  # the s3 extra

        for k, v in {"AWS_ACCESS_KEY_ID": "chaos", "AWS_SECRET_ACCESS_KEY": "chaos", "AWS_DEFAULT_REGION": "us-east-1"}.items():
            os.environ.setdefault(k, v)
        port = free_port()
        moto = subprocess.Popen([sys.executable, "-m", "moto.server", "-p", str(port), "-H", "127.0.0.1"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        stack.callback(moto.wait, 10)
        stack.callback(moto.terminate)  # callbacks run last first: terminate, then wait
        wait_for(lambda: _answers_http(f"http://127.0.0.1:{port}"), timeout=30, what="moto S3 server")
        boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}").create_bucket(Bucket="chaos")
        self.gate = TcpGate(port)
        self.gate.open()
        stack.callback(self.gate.shut)
        return self.gate.url

    # --- load -----------------------------------------------------------------------------------

    def _client(self) -> httpx.Client:
        return httpx.Client(headers={"Authorization": f"Bearer {KEY}"}, timeout=30)

    def _call(self, http: httpx.Client, method: str, path: str, what: str, **kw: Any) -> httpx.Response | None:
        """One call to a random live API process; None on a connection error (a killed process)."""
        api = self.random.choice(self.apis)
        try:
            r = http.request(method, api.url + path, **kw)
        except httpx.HTTPError:
            return None
        with self.lock:
            self.answers.append((time.time(), r.status_code, f"{what} {r.status_code}: {r.text[:120]}"))
        return r

    def _submit(self, http: httpx.Client, path: str, body: dict[str, Any], kind: str, nonce: str) -> Submitted | None:
        """Submit with an Idempotency-Key, re-sending after connection errors and 5xx/409/429 until answered."""
        started = time.monotonic()
        headers = {"Idempotency-Key": f"chaos-{nonce}"}
        for _ in range(200):
            r = self._call(http, "POST", path, kind, json=body, headers=headers)
            if r is not None and r.status_code == 200:
                with self.lock:
                    self.latencies.append((time.monotonic() - started) * 1000)
                data = r.json()
                ids = [t["task_id"] for t in data["data"]] if "data" in data else [data["batch_id"]]
                return Submitted(nonce, kind, ids)
            if r is not None and r.status_code < 500 and r.status_code not in (409, 429):
                raise AssertionError(f"{kind} refused: {r.status_code} {r.text[:300]}")
            time.sleep(0.2)
        return None

    def _client_loop(self, n: int, share: int) -> None:
        rng = random.Random(self.config.seed * 100 + n)
        with self._client() as http:
            finished: list[str] = []
            for i in range(share):
                nonce = f"{n}x{i}"
                roll = rng.random()
                hook = {"webhook_url": self.receiver.url, "webhook_events": ["start", "completed"]} if roll < 0.3 else {}
                if roll < 0.05:
                    prompt = f"a flaky lighthouse {nonce}"
                elif roll < 0.08:
                    prompt = f"a broken bridge {nonce}"
                else:
                    prompt = f"a chaos garden {nonce}"
                if finished and 0.6 < roll < 0.75:
                    parent = finished.pop()
                    kind = "upscale" if roll < 0.68 else "variation"
                    sub = self._submit(http, f"/v1/midjourney/generations/{kind}", {"task_id": parent, "index": 1, **hook}, kind, nonce)
                else:
                    sub = self._submit(http, IMAGINE, {"prompt": prompt, **hook}, "imagine", nonce)
                if sub is None:
                    continue
                with self.lock:
                    self.submitted.append(sub)
                if 0.75 < roll < 0.8:  # cancel some at once
                    self._call(http, "POST", f"/v1/midjourney/{sub.task_ids[0]}/cancel", "cancel")
                elif roll > 0.9:  # and remember some to follow up when they are done
                    r = self._call(http, "GET", f"/v1/midjourney/{sub.task_ids[0]}?wait=20", "wait")
                    if r is not None and r.status_code == 200 and r.json()["status"] == "SUCCESS":
                        finished.append(sub.task_ids[0])

    def _chaos_loop(self) -> None:
        started = time.monotonic()
        postgres_done = storage_done = False
        while not self.stop_chaos.wait(self.config.kill_every):
            elapsed = time.monotonic() - started
            if not postgres_done and elapsed > self.config.kill_every * 3:
                postgres_done = True
                with self._window(15):
                    self._postgres_fault()
                continue
            if not storage_done and elapsed > self.config.kill_every * 5:
                storage_done = True
                self.gate.shut()
                self.stop_chaos.wait(self.config.storage_outage_seconds)
                self.gate.open()
                continue
            victims: list[Server | Worker] = [*self.apis, *self.workers]
            victim = self.random.choice(victims)
            with self._window(5):
                victim.kill()
                self.kills += 1
                victim.start()

    @contextmanager
    def _window(self, after: float) -> Iterator[None]:
        start = time.time()
        try:
            yield
        finally:
            with self.lock:
                self.windows.append((start - 1, time.time() + after))

    def _postgres_fault(self) -> None:
        if self.config.postgres_fault == "restart" and shutil.which("pg_ctlcluster"):
            cluster = min(os.listdir("/etc/postgresql"))
            subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", cluster, "main", "restart", "-m", "fast"],
                           check=True, capture_output=True, timeout=120)
        else:
            with self.admin.connect() as conn:
                conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :d AND pid <> pg_backend_pid()"),
                             {"d": self.db_name})
        wait_for(lambda: _answers_sql(self.admin), timeout=60, what="PostgreSQL back up")

    def run(self) -> Report:
        cfg = self.config
        chaos = threading.Thread(target=self._chaos_loop, daemon=True)
        chaos.start()
        shares = [cfg.tasks // cfg.clients + (1 if i < cfg.tasks % cfg.clients else 0) for i in range(cfg.clients)]
        clients = [threading.Thread(target=self._client_loop, args=(i, share)) for i, share in enumerate(shares)]
        for c in clients:
            c.start()
        for c in clients:
            c.join()
        self.stop_chaos.set()
        chaos.join()
        # Everything runs again: every accepted task must now end.
        for api in self.apis:
            wait_for(lambda api=api: _answers_http(api.url + "/healthz"), timeout=60, what="API processes up")  # type: ignore[misc]
        return self._report()

    # --- the promises ---------------------------------------------------------------------------

    def _report(self) -> Report:
        rep = Report(kills=self.kills)
        engine = create_engine(self.db_url)
        deadline = time.monotonic() + self.config.deadline_seconds
        open_statuses = "('SUBMITTED', 'NOT_START', 'IN_PROGRESS', 'MODAL')"
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                left = conn.execute(text(f"SELECT count(*) FROM tasks WHERE status IN {open_statuses}")).scalar_one()
            if left == 0:
                break
            time.sleep(1)
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT id, status, action, prompt, result, fail_reason FROM tasks")).all()
            rep.lost = [r.id for r in rows if r.status in ("SUBMITTED", "NOT_START", "IN_PROGRESS", "MODAL")]
            rep.statuses = dict(collections.Counter(r.status for r in rows))
            rep.accepted = len(rows)
            reasons = collections.Counter((r.fail_reason or "")[:90] for r in rows if r.status == "FAILURE")
            rep.fail_reasons = dict(reasons.most_common())
            # A logical submit is one nonce: more tasks with it than it asked for is a duplicate.
            by_nonce = collections.Counter(r.prompt.rsplit(" ", 1)[-1] for r in rows if r.action == "IMAGINE")
            rep.duplicated = [n for n, c in by_nonce.items() if c > 1]
            ledger = conn.execute(text("SELECT task_id, kind, count(*) AS n FROM ledger WHERE task_id IS NOT NULL GROUP BY task_id, kind")).all()
            charges = {r.task_id: r.n for r in ledger if r.kind == "charge"}
            refunds = {r.task_id: r.n for r in ledger if r.kind == "refund"}
            rep.charged_twice = [t for t, n in charges.items() if n > 1]
            status = {r.id: r.status for r in rows}
            rep.refunds_wrong = [t for t in charges if refunds.get(t, 0) != (1 if status.get(t) in ("FAILURE", "CANCEL") else 0)]
            balances = conn.execute(text(
                "SELECT k.id, k.balance, coalesce(sum(l.amount), 0) AS total FROM api_keys k LEFT JOIN ledger l ON l.key_id = k.id "
                "WHERE k.balance IS NOT NULL GROUP BY k.id, k.balance")).all()
            rep.balances_equal_ledgers = all(int(b.balance) == int(b.total) for b in balances)
            successes = [(r.id, r.result) for r in rows if r.status == "SUCCESS" and r.result]
        engine.dispose()
        # Webhooks: per task, first deliveries in sequence order; one webhook-id, one (task, sequence).
        seen: dict[str, tuple[str, int]] = {}
        first_seq: dict[str, list[int]] = collections.defaultdict(list)
        for hook_id, task_id, seq in self.receiver.delivered:
            if hook_id in seen:
                if seen[hook_id] != (task_id, seq):
                    rep.webhook_unstable_ids.append(hook_id)
                continue
            seen[hook_id] = (task_id, seq)
            first_seq[task_id].append(seq)
        rep.webhook_events = len(seen)
        rep.webhook_out_of_order = [t for t, seqs in first_seq.items() if seqs != sorted(seqs)]
        # Files: every image of every SUCCESS task downloads.
        with self._client() as http:
            for task_id, result in successes:
                data = result if isinstance(result, dict) else json.loads(result)
                for key in data.get("image_keys", []):
                    r = self._call(http, "GET", f"/files/{key}", "file")
                    if r is None or r.status_code != 200 or not r.content:
                        rep.undownloadable.append(f"{task_id}:{key}")
        rep.errors_5xx_outside_windows = [
            what for at, code, what in self.answers
            if code >= 500 and not any(a <= at <= b for a, b in self.windows) and what.split(" ", 1)[0] != "file"
        ]
        rep.worker_thread_deaths = sum(
            (self.apis[0].data_dir / f"worker-{w.index}.log").read_text(errors="replace").count("pool thread died") for w in self.workers
        )
        if self.latencies:
            ordered = sorted(self.latencies)
            rep.submit_p99_ms = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
        return rep


def _answers_http(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code < 500
    except httpx.HTTPError:
        return False


def _answers_sql(engine: Any) -> bool:
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return True
    except Exception:  # noqa: BLE001 - any failure means "not up yet"
        return False


def run(config: Config, work_dir: Path) -> Report:
    harness = Harness(config, work_dir)
    with harness.running():
        return harness.run()
