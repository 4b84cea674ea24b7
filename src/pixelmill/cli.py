"""``pixelmill serve | worker | imagine | keys ...``"""

from __future__ import annotations

import signal
import threading
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
from pydantic import BaseModel

from pixelmill import __version__
from pixelmill.exceptions import SettingsError
from pixelmill.settings import Settings, load_settings
from pixelmill.tasks.requests import OPERATION_BODIES, ImagineRequest, RequestBody

if TYPE_CHECKING:  # imported where used, so that a command loads only what it needs
    from pixelmill.auth.keys import KeyStore
    from pixelmill.billing.ledger import Ledger
    from pixelmill.billing.prices import PriceTable
    from pixelmill.client import Client

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")


def _settings(**overrides: object) -> Settings:
    return load_settings(**{k: v for k, v in overrides.items() if v is not None})


class _BadSettings(click.ClickException):
    """A setting that cannot work: one line on stderr, exit status 78 (EX_CONFIG), no traceback."""

    exit_code = 78

    def show(self, file: typing.IO[Any] | None = None) -> None:
        click.echo(f"pixelmill: {self.message}", err=True)


class _Main(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SettingsError as exc:
            raise _BadSettings(str(exc)) from None


def _logging(settings: Settings) -> None:
    from pixelmill.observe.logs import configure_logging

    configure_logging(settings.log_format, settings.log_level)


@click.group(cls=_Main)
@click.version_option(__version__)
def main() -> None:
    """pixelmill: a Midjourney-style task API in front of image models."""


@main.command()
@click.option("--host", help="Interface to bind (env PIXELMILL_HOST, default 127.0.0.1).")
@click.option("--port", type=int, help="Port (env PIXELMILL_PORT, default 8080).")
@click.option("--workers", type=int, help="In-process worker threads (env PIXELMILL_WORKERS).")
def serve(host: str | None, port: int | None, workers: int | None) -> None:
    """Serve the HTTP API, with in-process workers (and PIXELMILL_API_PROCESSES processes)."""
    import uvicorn

    from pixelmill.app import create_app
    from pixelmill.runtime import build_runtime
    from pixelmill.serving import Helpers, Serving, helper_of, listening_socket

    helper = helper_of() is not None  # one of a serving process's helpers (serving.py)
    settings = _settings(host=host, port=port, workers=workers)
    _logging(settings)
    runtime = build_runtime(settings)
    new_key = runtime.keys.ensure_bootstrap(settings.api_key)
    try:
        sock = listening_socket(settings.host, settings.port)
    except OSError as exc:
        raise _BadSettings(f"cannot listen on {settings.host}:{settings.port}: {exc.strerror or exc}") from None
    if not helper:
        _banner(settings, new_key)
    helpers = Helpers(settings.api_processes - 1, sock) if not helper and settings.api_processes > 1 else None
    server = Serving(uvicorn.Config(create_app(runtime=runtime), log_level="warning"), helpers)
    if helpers is not None:
        helpers.start()
    server.run(sockets=[sock])


def _banner(settings: Settings, new_key: str | None) -> None:
    url = settings.public_url or f"http://{settings.host}:{settings.port}"
    if new_key:
        key_line = f"  admin API key (shown only this once, keep it): {new_key}\n"
        key = new_key
    elif settings.api_key:
        key_line, key = "  API key: the value of PIXELMILL_API_KEY\n", "$PIXELMILL_API_KEY"
    else:
        key_line = "  API key: the one printed at first start, or make one: pixelmill keys create\n"
        key = "$PIXELMILL_API_KEY"
    click.echo(
        f"pixelmill {__version__} serving on {url}  (OpenAPI docs: {url}/docs)\n"
        f"  web console: {url}/console (sign in with an API key)\n"
        f"  engine {settings.engine}, {settings.workers} in-process workers, "
        f"{settings.api_processes} API process{'es' if settings.api_processes > 1 else ''}, "
        f"data in {settings.data_dir.resolve()}\n"
        f"{key_line}"
        f"Try it:\n"
        f"  curl -s -X POST {url}/v1/midjourney/generations/imagine \\\n"
        f"       -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' \\\n"
        f"       -d '{{\"prompt\": \"a serene mountain lake at sunrise --ar 16:9\"}}'\n"
        f"  curl -s {url}/v1/midjourney/<task_id> -H 'Authorization: Bearer {key}'\n"
        f"  PIXELMILL_API_KEY={key} .venv/bin/pixelmill imagine 'a lighthouse at dusk' --upscale 2 --out out/\n",
        nl=True,
    )


@main.command()
def migrate() -> None:
    """Bring the database schema up to date and exit. Every process also does this at start; run it
    first when upgrading a deployment, so new code never meets an old schema."""
    from pixelmill.db.migrate import current
    from pixelmill.runtime import open_database

    settings = _settings()
    db = open_database(settings)
    click.echo(f"database schema at revision {current(db)}")
    db.dispose()


@main.command()
@click.option("--concurrency", type=int, help="Worker threads (default: PIXELMILL_WORKERS, at least 1).")
@click.option(
    "--lanes", type=click.Choice(["interactive", "batch", "interactive,batch"]),
    help="Lanes to take work from (default: PIXELMILL_WORKER_LANES, both; interactive first).",
)
@click.option("--batch-workers", type=int, help="Threads that may run batch work at once (default: all but one).")
@click.option("--metrics-port", type=int, help="Serve this worker's Prometheus counters on this port (on PIXELMILL_HOST).")
def worker(concurrency: int | None, lanes: str | None, batch_workers: int | None, metrics_port: int | None) -> None:
    """Run workers only: claim tasks from the shared database until stopped (SIGTERM / Ctrl-C).
    Also delivers webhooks from the outbox."""
    from pixelmill.runtime import build_runtime

    settings = _settings(worker_lanes=tuple(lanes.split(",")) if lanes else None, batch_workers=batch_workers)
    _logging(settings)
    runtime = build_runtime(settings)
    pool = runtime.start_workers(concurrency or max(1, settings.workers))
    if metrics_port is not None:
        from prometheus_client import start_http_server

        start_http_server(metrics_port, addr=settings.host, registry=runtime.worker_metrics.registry)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    click.echo(f"pixelmill worker {pool.process_id} running ({', '.join(settings.worker_lanes)}); Ctrl-C to stop")
    stop.wait()
    runtime.close()


def _kinds(annotation: Any) -> set[Any]:
    """The plain types inside ``X | None`` and ``Annotated[X, ...]``: {bool}, {list}, {int} ..."""
    if typing.get_origin(annotation) is typing.Annotated:
        return _kinds(typing.get_args(annotation)[0])
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return set().union(*(_kinds(a) for a in typing.get_args(annotation)))
    return {typing.get_origin(annotation) or annotation}


def _body_options(model: type[BaseModel], skip: tuple[str, ...]) -> Callable[[F], F]:
    """One CLI option per body field of ``model`` (``--aspect-ratio``, ``--tile/--no-tile``,
    ``--image-urls`` repeated): the CLI cannot drift from the API, and values are checked by the
    model itself."""

    def decorate(command: F) -> F:
        for name, info in reversed(list(model.model_fields.items())):
            if name in skip:
                continue
            flag = "--" + name.replace("_", "-")
            kinds = _kinds(info.annotation)
            help_text = info.description
            if bool in kinds:
                command = click.option(f"{flag}/--no-{flag[2:]}", default=None, help=help_text)(command)
            elif list in kinds:
                command = click.option(flag, multiple=True, help=f"{help_text} Repeat for several.")(command)
            else:
                command = click.option(flag, help=help_text)(command)
        return command

    return decorate


@main.command()
@click.argument("prompt")
@_body_options(ImagineRequest, skip=("prompt",))
@click.option("--upscale", "upscale_index", type=click.IntRange(1, 4), help="Also upscale image N (1-4).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("."), show_default=True)
@click.option("--url", envvar="PIXELMILL_URL", default="http://127.0.0.1:8080", show_default=True, help="Server (env PIXELMILL_URL).")
@click.option("--api-key", envvar="PIXELMILL_API_KEY", required=True, help="API key (env PIXELMILL_API_KEY).")
@click.option("--timeout", type=float, default=300, show_default=True)
def imagine(
    prompt: str, upscale_index: int | None, out_dir: Path, url: str, api_key: str, timeout: float, **fields: Any
) -> None:
    """Submit PROMPT to a running server, show progress, save the files.

    Body fields given as options override the prompt's --flags. Progress goes to stderr; stdout
    lists the saved files, one per line."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from pixelmill.client import APIError, Client, TaskFailed

    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        with Client(url, api_key) as client, Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(),
            console=Console(stderr=True),  # stdout carries only the saved paths, for scripts
        ) as bar:

            def run(label: str, task_id: str) -> dict[str, Any]:
                row = bar.add_task(f"{label} {task_id}", total=100, status="SUBMITTED")

                def update(t: dict[str, Any]) -> None:
                    bar.update(row, completed=int(t["progress"].rstrip("%")), status=t["status"])

                return client.wait(task_id, timeout=timeout, poll_interval=0.25, on_update=update)

            body = {k: list(v) if isinstance(v, tuple) else v for k, v in fields.items() if v not in (None, ())}
            saved = []
            for task_id in client.imagine_all(prompt, **body):  # several with --repeat
                task = run("imagine", task_id)
                saved += _save(client, task, out_dir)
                if upscale_index:
                    up = run(f"upscale U{upscale_index}", client.upscale(task["task_id"], upscale_index))
                    saved += _save(client, up, out_dir, suffix=f"_U{upscale_index}")
    except (APIError, TaskFailed, TimeoutError) as exc:
        raise click.ClickException(str(exc)) from exc
    for path in saved:
        click.echo(str(path))


def _save(client: Client, task: dict[str, Any], out_dir: Path, suffix: str = "") -> list[Path]:
    paths = []
    urls = ([("grid", task["grid_image_url"])] if task.get("grid_image_url") else []) + [
        (str(i + 1), u) for i, u in enumerate(task["image_urls"])
    ] + [(f"clip{i + 1}", u) for i, u in enumerate(task.get("video_urls") or [])]
    for name, url in urls:
        path = out_dir / f"{task['task_id']}{suffix}_{name}.{url.rsplit('.', 1)[-1]}"
        path.write_bytes(client.download(url))
        paths.append(path)
    return paths


@main.group()
def op() -> None:
    """Every operation after imagine, on a running server: variation, upscale, zoom, pan, ...

    Options are the operation's body fields. The command waits for the task, saves its files
    (images, clips) to --out and prints their paths; describe and shorten print their text. A
    task that waits in MODAL (inpaint, custom zoom) prints its id: continue it with `op modal`."""


def _operation_command(name: str, model: type[RequestBody]) -> None:
    @op.command(name=name, help=(model.__doc__ or f"Submit a {name} task.").split("\n\n")[0])
    @_body_options(model, skip=())
    @click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("."), show_default=True)
    @click.option("--url", envvar="PIXELMILL_URL", default="http://127.0.0.1:8080", show_default=True, help="Server (env PIXELMILL_URL).")
    @click.option("--api-key", envvar="PIXELMILL_API_KEY", required=True, help="API key (env PIXELMILL_API_KEY).")
    @click.option("--timeout", type=float, default=300, show_default=True)
    def command(out_dir: Path, url: str, api_key: str, timeout: float, **fields: Any) -> None:
        from pixelmill.client import APIError, Client, NeedsModal, TaskFailed
        from pixelmill.client.sync import check_body  # the server's own checks, before any request

        body = {k: list(v) if isinstance(v, tuple) else v for k, v in fields.items() if v not in (None, ())}
        out_dir.mkdir(parents=True, exist_ok=True)
        try:
            with Client(url, api_key) as client:
                task_id = client.submit(name, check_body(model, body))
                try:
                    task = client.wait(task_id, timeout=timeout, poll_interval=0.25)
                except NeedsModal:
                    click.echo(f"{task_id} waits in MODAL: pixelmill op modal --task-id {task_id} ...")
                    return
                if task["description"]:
                    click.echo(task["description"])
                for path in _save(client, task, out_dir):
                    click.echo(str(path))
        except (APIError, TaskFailed, TimeoutError) as exc:
            raise click.ClickException(str(exc)) from exc


for _name, _model in OPERATION_BODIES.items():
    _operation_command(_name, _model)


@main.command()
@click.argument("image", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--url", envvar="PIXELMILL_URL", default="http://127.0.0.1:8080", show_default=True, help="Server (env PIXELMILL_URL).")
@click.option("--api-key", envvar="PIXELMILL_API_KEY", required=True, help="API key (env PIXELMILL_API_KEY).")
def upload(image: Path, url: str, api_key: str) -> None:
    """Store IMAGE (PNG, JPEG or WebP) in pixelmill and print its URL, for image prompts,
    --sref/--cref and masks."""
    from pixelmill.client import APIError, Client

    try:
        with Client(url, api_key) as client:
            click.echo(client.upload(image)["url"])
    except APIError as exc:
        raise click.ClickException(str(exc)) from exc


@main.group()
def keys() -> None:
    """Manage API keys (works on the configured database directly)."""


def _key_store() -> KeyStore:
    from pixelmill.auth.keys import KeyStore
    from pixelmill.clock import SystemClock
    from pixelmill.runtime import open_database

    return KeyStore(open_database(load_settings()), SystemClock())


def _ledger() -> Ledger:
    from pixelmill.billing.ledger import Ledger
    from pixelmill.clock import SystemClock
    from pixelmill.runtime import open_database

    return Ledger(open_database(load_settings()), SystemClock())


def _date_ms(value: str | None, default_ms: int) -> int:
    """YYYY-MM-DD (UTC) or epoch milliseconds."""
    import datetime as dt

    if value is None:
        return default_ms
    if value.isdigit():
        return int(value)
    try:
        day = dt.datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=dt.UTC)
    except ValueError:
        raise click.BadParameter(f"{value!r}: give YYYY-MM-DD or epoch milliseconds") from None
    return int(day.timestamp() * 1000)


@keys.command("create")
@click.option("--tenant", default="default", show_default=True, help="Tenant the key belongs to (created if new).")
@click.option("--name", default="", help="A label for the key.")
@click.option("--admin", is_flag=True, help="Make an admin key.")
def keys_create(tenant: str, name: str, admin: bool) -> None:
    """Create a key and print it (the only time it is shown)."""
    from pixelmill.exceptions import PixelmillError

    try:
        key, plaintext = _key_store().create(tenant_id=tenant, name=name, is_admin=admin)
    except PixelmillError as exc:
        raise click.ClickException(exc.description) from exc
    click.echo(f"id {key.id} tenant {key.tenant_id}{' admin' if admin else ''}")
    click.echo(plaintext)


@keys.command("list")
def keys_list() -> None:
    """List keys (never their secrets)."""
    for k in _key_store().list():
        state = "revoked" if k.revoked_at else "active"
        click.echo(f"{k.id}  {k.prefix}…  tenant={k.tenant_id}  {'admin ' if k.is_admin else ''}{state}  {k.name}")


@keys.command("revoke")
@click.argument("key_id")
def keys_revoke(key_id: str) -> None:
    """Revoke a key by its id (see ``keys list``); it stops working at once."""
    if not _key_store().revoke(key_id):
        raise click.ClickException(f"no active key with id {key_id}")
    click.echo(f"revoked {key_id}")


@keys.command("limits")
@click.argument("key_id")
@click.option("--rate-per-minute", type=int, help="Submissions per minute for this key (0 = no cap; omit = default).")
@click.option("--max-concurrent", type=int, help="Tasks queued or running at once (0 = no cap; omit = default).")
def keys_limits(key_id: str, rate_per_minute: int | None, max_concurrent: int | None) -> None:
    """Give a key its own caps; an omitted cap falls back to the deployment default."""
    from pixelmill.exceptions import ValidationError

    try:
        found = _key_store().set_limits(key_id, rate_per_minute=rate_per_minute, max_concurrent=max_concurrent)
    except ValidationError as exc:
        raise click.ClickException(exc.description) from exc
    if not found:
        raise click.ClickException(f"no active key with id {key_id}")
    shown = {"rate_per_minute": rate_per_minute, "max_concurrent": max_concurrent}
    click.echo(f"{key_id}: " + ", ".join(f"{k}={'default' if v is None else v}" for k, v in shown.items()))


@keys.command("balance")
@click.argument("key_id")
@click.option("--set", "set_to", type=int, help="Give the key exactly this many units (makes it limited).")
@click.option("--credit", type=int, help="Add units to a limited key (negative takes away).")
@click.option("--unlimited", is_flag=True, help="Make the key unlimited.")
def keys_balance(key_id: str, set_to: int | None, credit: int | None, unlimited: bool) -> None:
    """Show or change a key's quota balance; every change is a ledger entry."""
    from pixelmill.exceptions import ValidationError

    if sum(x is not None and x is not False for x in (set_to, credit, unlimited or None)) > 1:
        raise click.UsageError("give one of --set, --credit, --unlimited")
    ledger = _ledger()
    try:
        if set_to is not None or unlimited:
            ledger.set_balance(key_id, None if unlimited else set_to, "set by CLI")
        elif credit is not None:
            ledger.credit(key_id, credit, "credit by CLI")
        balance = ledger.balance(key_id)
    except ValidationError as exc:
        raise click.ClickException(exc.description) from exc
    click.echo(f"{key_id}: balance {'unlimited' if balance is None else balance}")


@main.command()
@click.option("--since", help="Start: YYYY-MM-DD (UTC) or epoch ms (default: 30 days ago).")
@click.option("--until", help="End, exclusive (default: now).")
@click.option("--key", "key_id", help="Only this API key.")
def usage(since: str | None, until: str | None, key_id: str | None) -> None:
    """Charged and refunded units per key and price key, and estimated engine cost."""
    import time as _time

    settings = load_settings()
    end = _date_ms(until, int(_time.time() * 1000))
    start = _date_ms(since, end - 30 * 86_400_000)
    ledger = _ledger()
    for row in ledger.usage(start, end, key_id=key_id):
        click.echo(f"{row.key_id}  {row.price_key}  tasks {row.tasks}  charged {row.charged}  refunded {row.refunded}  net {row.net}")
    for cost in ledger.engine_costs(start, end, settings.engine_cost_per_second):
        click.echo(f"engine {cost.engine}  tasks {cost.tasks}  run {cost.run_seconds:.1f}s  estimated cost {cost.estimated_cost:.4f}")


@main.group(invoke_without_command=True)
@click.pass_context
def prices(ctx: click.Context) -> None:
    """Show the price table (units per price key); ``prices set KEY UNITS`` changes one."""
    if ctx.invoked_subcommand is None:
        for key, units in _price_table().all().items():
            click.echo(f"{key}  {units}")


def _price_table() -> PriceTable:
    from pixelmill.billing.prices import PriceTable, read_price_file
    from pixelmill.clock import SystemClock
    from pixelmill.runtime import open_database

    settings = load_settings()
    table = PriceTable(open_database(settings), SystemClock())
    table.seed(read_price_file(settings.prices_file) if settings.prices_file else {})
    return table


@prices.command("set")
@click.argument("price_key")
@click.argument("units", type=int)
def prices_set(price_key: str, units: int) -> None:
    """Set what one PRICE_KEY costs, in units (video keys: per clip)."""
    from pixelmill.exceptions import ValidationError

    try:
        _price_table().set(price_key, units)
    except ValidationError as exc:
        raise click.ClickException(exc.description) from exc
    click.echo(f"{price_key}  {units}")


# --- review queue ------------------------------------------------------------------------------

_server_options = [
    click.option("--url", envvar="PIXELMILL_URL", default="http://127.0.0.1:8080", show_default=True, help="Server (env PIXELMILL_URL)."),
    click.option("--api-key", envvar="PIXELMILL_API_KEY", required=True, help="An admin API key (env PIXELMILL_API_KEY)."),
]


def _with_server(f: F) -> F:
    for option in reversed(_server_options):
        f = option(f)
    return f


def _admin_call(url: str, api_key: str, call: Callable[[Client], T]) -> T:
    from pixelmill.client import APIError, Client

    try:
        with Client(url, api_key) as client:
            return call(client)
    except APIError as exc:
        raise click.ClickException(str(exc)) from exc


@main.group()
def reviews() -> None:
    """Output images held for review: list, look, approve (publish) or reject. Talks to the
    server, so an approval publishes through its storage and sends the task's webhook."""


@reviews.command("list")
@click.option("--state", type=click.Choice(["pending", "approved", "rejected"]), default="pending", show_default=True)
@click.option("--tenant", help="Only this tenant.")
@_with_server
def reviews_list(state: str, tenant: str | None, url: str, api_key: str) -> None:
    for r in _admin_call(url, api_key, lambda c: c.reviews(state, tenant)):
        found = ", ".join(f"{x['label']} {x['score']:.2f}" for x in r["reasons"])
        decided = f"  {r['state']} by {r['decided_by']}" if r["decided_by"] else ""
        click.echo(f"{r['id']}  tenant {r['tenant_id']}  image {r['index']}  {found}{decided}")


@reviews.command("show")
@click.argument("review_id")
@click.option("--save", type=click.Path(dir_okay=False, path_type=Path), help="Write the held image (PNG) here.")
@_with_server
def reviews_show(review_id: str, save: Path | None, url: str, api_key: str) -> None:
    import json as _json

    def call(client: Client) -> dict[str, Any]:
        review = client.review(review_id)
        if save is not None:
            save.write_bytes(client.review_image(review_id))
        return review

    click.echo(_json.dumps(_admin_call(url, api_key, call), indent=2))


@reviews.command("approve")
@click.argument("review_id")
@click.option("--note", help="Why, for the audit log.")
@_with_server
def reviews_approve(review_id: str, note: str | None, url: str, api_key: str) -> None:
    """Publish the held image into its task."""
    done = _admin_call(url, api_key, lambda c: c.approve_review(review_id, note))
    click.echo(f"{review_id}: approved; task {done['task']['task_id']} now shows {len(done['task']['image_urls'])} image(s)")


@reviews.command("reject")
@click.argument("review_id")
@click.option("--note", help="Why, for the audit log.")
@_with_server
def reviews_reject(review_id: str, note: str | None, url: str, api_key: str) -> None:
    done = _admin_call(url, api_key, lambda c: c.reject_review(review_id, note))
    click.echo(f"{review_id}: rejected; task {done['task']['task_id']} is {done['task']['status']}")


@main.group()
def accounts() -> None:
    """The upstream accounts of remote engines' pools: what each is doing, and its health. Talks
    to the server; needs an admin key."""


@accounts.command("list")
@click.option("--engine", help="Only this engine.")
@_with_server
def accounts_list(engine: str | None, url: str, api_key: str) -> None:
    for a in _admin_call(url, api_key, lambda c: c.accounts(engine)):
        cap = "" if a["max_in_flight"] is None else f"/{a['max_in_flight']}+{a['queue_size']}"
        rate = "-" if a["success_rate"] is None else f"{a['success_rate']:.0%}"
        latency = "-" if a["mean_latency_ms"] is None else f"{a['mean_latency_ms'] / 1000:.1f}s"
        state = "enabled" if a["enabled"] else f"DISABLED ({a['disabled_by']}): {a['disabled_reason']}"
        click.echo(f"{a['engine']}/{a['name']}  running {a['running']} queued {a['queued']}{cap}  success {rate}  "
                   f"latency {latency}  submits {a['submits']} refused {a['refused']}  {state}")


def _account_switch(action: str, enabled: bool, doc: str) -> None:
    """``pixelmill accounts enable|disable ENGINE ACCOUNT [--reason]``: one command per switch."""

    @accounts.command(action, help=doc)
    @click.argument("engine")
    @click.argument("account")
    @click.option("--reason", default="", help="Why, for the account and the audit log.")
    @_with_server
    def switch(engine: str, account: str, reason: str, url: str, api_key: str) -> None:
        _admin_call(url, api_key, lambda c: c.set_account(engine, account, enabled=enabled, reason=reason))
        click.echo(f"{engine}/{account}: {action}d")


_account_switch("disable", False, "Take no new tasks on the account until an admin enables it (its running tasks finish).")
_account_switch("enable", True, "Take tasks on the account again, whatever disabled it.")


@main.command()
@click.option("--kind", type=click.Choice(["review", "template", "account"]), help="Only this kind of subject.")
@click.option("--subject", help="Only this review / template.")
@_with_server
def audit(kind: str | None, subject: str | None, url: str, api_key: str) -> None:
    """The audit log, newest first: who decided what, when."""
    import datetime as dt

    for e in _admin_call(url, api_key, lambda c: c.audit(kind, subject)):
        at = dt.datetime.fromtimestamp(e["at"] / 1000, dt.UTC).isoformat(timespec="seconds")
        click.echo(f"{at}  {e['actor']}  {e['kind']} {e['subject']}  {e['action']}  {e['detail']}")


# --- templates -------------------------------------------------------------------------------------

@main.group()
def templates() -> None:
    """Versioned prompt templates: import from YAML (kept in git), publish, release, roll out,
    roll back, evaluate. Talks to the server; changes need an admin key."""


def _spec_of(data: dict[str, Any]) -> dict[str, Any]:
    from pixelmill.templates.spec import TemplateSpec

    return {k: data[k] for k in TemplateSpec.model_fields if k in data}


@templates.command("import")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--publish", is_flag=True, help="Publish the version the file makes (a no-op when nothing changed).")
@click.option("--release", "tag", help="Then point this release tag at it (needs --publish).")
@_with_server
def templates_import(path: Path, publish: bool, tag: str | None, url: str, api_key: str) -> None:
    """Make the server's template match the YAML file PATH: a new version when the content
    changed (a draft is edited in place), nothing when it did not; then its evaluation sets."""
    import yaml

    from pixelmill.client import APIError
    from pixelmill.templates.spec import TemplateSpec

    if tag and not publish:
        raise click.UsageError("--release needs --publish: only published versions are released")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise click.ClickException(f"{path}: not YAML: {exc}") from exc
    if not isinstance(data, dict) or "name" not in data or "body" not in data:
        raise click.ClickException(f"{path}: needs at least name and body (see docs/templates.md)")
    unknown = set(data) - set(TemplateSpec.model_fields) - {"name", "description", "note", "author", "sets"}
    if unknown:
        raise click.ClickException(f"{path}: unknown key(s) {', '.join(sorted(unknown))}")
    spec = _spec_of(data)
    try:
        local_hash = TemplateSpec.model_validate(spec).content_hash()
    except Exception as exc:  # any problem with the file: pydantic's message names the field
        raise click.ClickException(f"{path}: {exc}") from exc
    name, note, author = data["name"], data.get("note", ""), data.get("author")

    def call(client: Client) -> None:
        try:
            current = client.template(name)
        except APIError as exc:
            if exc.status_code != 404:
                raise
            made = client.create_template(name, spec, description=data.get("description", ""), note=note, author=author)
            version, state, said = made["versions"][0]["version"], "draft", "created"
        else:
            latest = current["versions"][0]
            if latest["content_hash"] == local_hash:
                version, state, said = latest["version"], latest["state"], "unchanged"
            elif latest["state"] == "draft":
                client.edit_template_version(name, latest["version"], spec, note=note)
                version, state, said = latest["version"], "draft", "draft edited"
            else:
                version, state, said = client.add_template_version(name, spec, note=note, author=author)["version"], "draft", "new version"
        click.echo(f"{name} v{version}: {said} ({local_hash[:12]})")
        if publish and state == "draft":
            client.publish_template(name, version)
            click.echo(f"{name} v{version}: published")
        if tag:
            client.release_template(name, tag, version)
            click.echo(f"{name}/{tag} → v{version}")
        for set_name, items in (data.get("sets") or {}).items():
            client.put_evaluation_set(name, set_name, items)
            click.echo(f"{name} set {set_name}: {len(items)} items")

    _admin_call(url, api_key, call)


@templates.command("create")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_with_server
@click.pass_context
def templates_create(ctx: click.Context, path: Path, url: str, api_key: str) -> None:
    """Create a template from a YAML file (version 1, a draft); same as import for a new name."""
    ctx.invoke(templates_import, path=path, publish=False, tag=None, url=url, api_key=api_key)


@templates.command("show")
@click.argument("name")
@_with_server
def templates_show(name: str, url: str, api_key: str) -> None:
    """Versions (author, note, hash) and release tags with their rollouts."""
    t = _admin_call(url, api_key, lambda c: c.template(name))
    click.echo(f"{t['name']}  {t['description']}")
    for tag, r in t["releases"].items():
        rollout = f"  rollout v{r['candidate']} at {r['percent']}%{' (paused)' if r['paused'] else ''}" if r["candidate"] else ""
        click.echo(f"  release {tag} → v{r['version']}{rollout}")
    for v in t["versions"]:
        click.echo(f"  v{v['version']}  {v['state']:9s}  {v['content_hash'][:12]}  by {v['author']}  {v['note']}")


@templates.command("publish")
@click.argument("name")
@click.argument("version", type=int)
@_with_server
def templates_publish(name: str, version: int, url: str, api_key: str) -> None:
    """Freeze a draft version: it can then be released, and never changes."""
    _admin_call(url, api_key, lambda c: c.publish_template(name, version))
    click.echo(f"{name} v{version}: published")


@templates.command("release")
@click.argument("name")
@click.argument("tag")
@click.argument("version", type=int)
@_with_server
def templates_release(name: str, tag: str, version: int, url: str, api_key: str) -> None:
    """Point release TAG (stable, canary, ...) at VERSION."""
    r = _admin_call(url, api_key, lambda c: c.release_template(name, tag, version))
    click.echo(f"{name}/{tag} → v{r['version']}")


@templates.command("rollout")
@click.argument("name")
@click.argument("tag")
@click.argument("version", type=int)
@click.argument("percent", type=click.IntRange(0, 100))
@_with_server
def templates_rollout(name: str, tag: str, version: int, percent: int, url: str, api_key: str) -> None:
    """Send PERCENT % of callers of TAG to VERSION (sticky per caller)."""
    r = _admin_call(url, api_key, lambda c: c.rollout_template(name, tag, version, percent))
    click.echo(f"{name}/{tag}: v{r['version']}, rollout v{r['candidate']} at {r['percent']}%")


def _release_action(action: str, help_text: str) -> None:
    @templates.command(action, help=help_text)
    @click.argument("name")
    @click.argument("tag", default="stable")
    @_with_server
    def command(name: str, tag: str, url: str, api_key: str) -> None:
        r = _admin_call(url, api_key, lambda c: c.release_action(name, tag, action))
        rollout = f", rollout v{r['candidate']} at {r['percent']}%{' (paused)' if r['paused'] else ''}" if r["candidate"] else ""
        click.echo(f"{name}/{tag}: v{r['version']}{rollout}")


_release_action("promote", "The rollout's candidate becomes TAG's version for everyone.")
_release_action("pause", "Everyone back on TAG's version; the rollout is kept for resume.")
_release_action("resume", "Resume a paused rollout.")
_release_action("rollback", "Drop the running rollout, or return TAG to the version before its last promotion.")


@templates.command("eval")
@click.argument("name")
@click.option("--set", "set_name", required=True, help="The evaluation set.")
@click.option("--baseline", type=int, required=True)
@click.option("--candidate", type=int, required=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--wait/--no-wait", default=True, show_default=True, help="Wait for the contact sheet.")
@click.option("--timeout", type=float, default=1800, show_default=True)
@_with_server
def templates_eval(name: str, set_name: str, baseline: int, candidate: int, seed: int, wait: bool, timeout: float, url: str, api_key: str) -> None:
    """Generate the set on both versions (batch lane, fixed seeds) and print the contact sheet's link."""
    import time as _time

    def call(client: Client) -> dict[str, Any]:
        ev = client.evaluate_template(name, set_name, baseline, candidate, seed)
        deadline = _time.monotonic() + timeout
        while wait and ev["state"] != "done":
            if _time.monotonic() > deadline:
                raise click.ClickException(f"evaluation {ev['id']} still running after {timeout:g}s: {ev['links']['sheet']}")
            _time.sleep(1)
            ev = client.evaluation(name, ev["id"])
        return ev

    ev = _admin_call(url, api_key, call)
    if ev["state"] == "done":
        for i, p in enumerate(ev["pairs"], 1):
            score = f"{p['score']:.4f}" if p.get("score") is not None else f"no score ({p.get('error')})"
            click.echo(f"  #{i}  {score}  {p['variables']}")
        s = ev["summary"]
        click.echo(f"mean {s['mean']}  median {s['median']}  max {s['max']}  ({s['scored']}/{s['pairs']} scored)")
    click.echo(f"evaluation {ev['id']} {ev['state']}: {ev['links']['sheet']}")
