"""`openscholar serve`, `openscholar worker` and `openscholar keys ...`: the HTTP service and its workers."""

from __future__ import annotations

import os
import subprocess
import sys

import typer

from openscholar.commands.common import err, out, print_json, settings, state

keys_app = typer.Typer(help="API keys for the HTTP service (stored hashed).", no_args_is_help=True)


def serve(
    ctx: typer.Context,
    host: str = typer.Option(None, "--host", help="Bind address (default: service.host)."),
    port: int = typer.Option(None, "--port", help="Port (default: service.port)."),
    embedded_worker: bool = typer.Option(
        None, "--embedded-worker/--no-embedded-worker",
        help="Also start one worker process (default: on when no broker is configured).",
    ),
    log_level: str = typer.Option("info", "--log-level", help="uvicorn log level."),
) -> None:
    """Run the HTTP API (and, with no broker configured, an embedded worker beside it)."""
    import uvicorn

    from api.app import create_app
    from api.celery_app import is_embedded

    s = settings(ctx)
    host = host or s.service.host
    port = port or s.service.port
    if embedded_worker is None:
        embedded_worker = is_embedded(s)
    worker: subprocess.Popen[bytes] | None = None
    if embedded_worker:
        config = state(ctx).config
        cmd = [sys.executable, "-m", "openscholar.cli", *(["--config", str(config)] if config else []), "worker"]
        # Same process group as `serve`: a signal to the group (Ctrl-C, a supervisor, a test's
        # killpg) reaches the worker too, so it can never outlive the API it serves.
        worker = subprocess.Popen(cmd)
        err.print(f"started an embedded worker (pid {worker.pid})")
    try:
        uvicorn.run(create_app(s), host=host, port=port, log_level=log_level, timeout_graceful_shutdown=5)
    finally:
        if worker is not None and worker.poll() is None:
            worker.terminate()
            try:
                worker.wait(timeout=20)
            except subprocess.TimeoutExpired:
                worker.kill()


def worker(
    ctx: typer.Context,
    concurrency: int = typer.Option(None, "--concurrency", "-c", help="Processes (default: service.worker_concurrency)."),
    pool: str = typer.Option("prefork", "--pool", help="prefork (default), solo or threads."),
    name: str = typer.Option(None, "--name", "-n", help="Worker node name (default: openscholar@HOST-PID)."),
    log_level: str = typer.Option("INFO", "--log-level", help="Celery log level."),
) -> None:
    """Run a Celery worker that answers jobs (the Engine is loaded once per worker process)."""
    from api.celery_app import broker_url, configure

    s = settings(ctx)
    app = configure(s)
    import api.tasks  # noqa: F401 - registers the task

    n = concurrency or s.service.worker_concurrency
    node = name or f"openscholar@%h-{os.getpid()}"
    err.print(f"worker {node}: broker {_redact(broker_url(s))}, datastore {s.datastore_path}, {n} process(es)")
    app.worker_main(argv=[
        "worker", f"--concurrency={n}", f"--pool={pool}", f"--hostname={node}", f"--loglevel={log_level}",
        f"--queues={s.service.queue}", "--without-gossip", "--without-mingle",
    ])


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


@keys_app.command("create")
def keys_create(ctx: typer.Context, name: str = typer.Argument(..., help="Who the key is for.")) -> None:
    """Create an API key; the key is printed once, alone on the last line."""
    from api.auth import KeyStore, keys_db_path

    path = keys_db_path(settings(ctx))
    key = KeyStore(path).create(name)
    err.print(f"created key {name!r} in {path}; store it now, it is not shown again")
    sys.stdout.write(key + "\n")
    sys.stdout.flush()


@keys_app.command("list")
def keys_list(ctx: typer.Context) -> None:
    """List keys (names and hash prefixes, never the keys)."""
    from api.auth import KeyStore, keys_db_path

    print_json(KeyStore(keys_db_path(settings(ctx))).list())


@keys_app.command("revoke")
def keys_revoke(ctx: typer.Context, name: str = typer.Argument(..., help="The key's name.")) -> None:
    """Revoke every key with this name."""
    from api.auth import KeyStore, keys_db_path

    n = KeyStore(keys_db_path(settings(ctx))).revoke(name)
    if n == 0:
        raise typer.BadParameter(f"no active key named {name!r}", param_hint="NAME")
    out.print(f"revoked {n} key(s) named {name!r}")


def register(app: typer.Typer, groups: dict[str, typer.Typer]) -> None:
    app.command("serve")(serve)
    app.command("worker")(worker)
    app.add_typer(keys_app, name="keys")
