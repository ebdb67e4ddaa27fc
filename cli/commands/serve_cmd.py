"""`openscholar serve`, `openscholar worker` and `openscholar keys ...`: the HTTP service and its workers."""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
from types import FrameType
from typing import TYPE_CHECKING

import typer

from cli.common import err, out, print_json, settings, state

if TYPE_CHECKING:
    from api.embedded import EmbeddedWorker

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
    from api.celery_app import build_store, embedded_dir, is_embedded
    from api.embedded import EmbeddedWorker

    s = settings(ctx)
    host = host or s.service.host
    port = port or s.service.port
    if embedded_worker is None:
        embedded_worker = is_embedded(s)
    # uvicorn handles SIGTERM itself, but once shut down it re-raises the signal with the handler it
    # found; with the default one the process dies on the spot and the `finally` below never runs (the
    # embedded worker was left running). Raising SystemExit instead unwinds through it.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    worker: EmbeddedWorker | None = None
    try:
        if embedded_worker:
            worker = EmbeddedWorker(
                _worker_cmd(state(ctx).config), service_dir=embedded_dir(s), queue=s.service.queue,
                store=build_store(s), max_backoff_s=s.service.embedded_restart_max_s,
                stop_s=s.service.embedded_worker_stop_s,
            ).start()
            err.print(f"started an embedded worker (pid {worker.pid}); it is restarted if it dies")
        uvicorn.run(create_app(s), host=host, port=port, log_level=log_level, timeout_graceful_shutdown=5)
    finally:
        if worker is not None:
            worker.stop()


def _exit_on_signal(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def _worker_cmd(config: object) -> list[str]:
    """`openscholar worker` tied to this process: if `serve` dies without stopping it (SIGKILL), the
    worker's parent-death signal (set by `--parent-pid`) stops it."""
    return [sys.executable, "-m", "cli", *(["--config", str(config)] if config else []),
            "worker", "--parent-pid", str(os.getpid())]


def _exit_with_parent(parent_pid: int, stop_s: float) -> None:
    """Make this worker go away with `serve` (its parent), and within stop_s of being told to stop.

    Linux only (PR_SET_PDEATHSIG); elsewhere `serve`'s own shutdown still stops the worker.
    """
    if not sys.platform.startswith("linux"):
        return
    # PR_SET_PDEATHSIG = 1: the kernel sends SIGTERM to this process when its parent exits, for any
    # reason, SIGKILL included. Celery's pool processes set the same (with SIGKILL) against this one.
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(1, signal.SIGTERM, 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"prctl(PR_SET_PDEATHSIG) failed: {os.strerror(errno)}")
    if os.getppid() != parent_pid:  # serve died before the prctl above: no signal will come
        err.print(f"worker: the serve process {parent_pid} that started this worker is gone; exiting")
        raise SystemExit(1)

    from celery.signals import worker_shutting_down

    def arm_deadline(**_: object) -> None:
        # Warm shutdown waits for the running job and for a pool process still loading its models; on
        # the SQLite transport it was reported not to end within 150 s. SIGALRM's default action ends this
        # process stop_s later whatever Python is doing (its pool processes follow: parent-death
        # SIGKILL). Armed once: a second SIGTERM does not push the deadline back.
        if signal.getitimer(signal.ITIMER_REAL)[0] == 0:
            signal.signal(signal.SIGALRM, signal.SIG_DFL)
            signal.setitimer(signal.ITIMER_REAL, stop_s)

    worker_shutting_down.connect(arm_deadline, weak=False)


def worker(
    ctx: typer.Context,
    concurrency: int = typer.Option(None, "--concurrency", "-c", help="Processes (default: service.worker_concurrency)."),
    pool: str = typer.Option("prefork", "--pool", help="prefork (default), solo or threads."),
    name: str = typer.Option(None, "--name", "-n", help="Worker node name (default: openscholar@HOST-PID)."),
    log_level: str = typer.Option("INFO", "--log-level", help="Celery log level."),
    parent_pid: int = typer.Option(
        None, "--parent-pid", hidden=True, help="Exit with this process (set by `serve` for its embedded worker).",
    ),
    queues: str = typer.Option(
        "answer", "--queues", "-Q",
        help="What to work on, comma-separated: answer (questions, service.queue) and/or build (datastore "
        "build parts, service.build_queue).",
    ),
) -> None:
    """Run a Celery worker that answers jobs (the Engine is loaded once per worker process) and/or builds
    datastore parts (`datastore build --workers celery`; the embedder is loaded once per process, on
    embedder.device)."""
    from api.celery_app import broker_url, configure, set_roles

    roles = {q.strip() for q in queues.split(",") if q.strip()}
    if not roles or roles - {"answer", "build"}:
        raise typer.BadParameter(f"unknown queue(s) {sorted(roles - {'answer', 'build'})}: use answer, build "
                                 "or answer,build", param_hint="--queues")
    s = settings(ctx)
    if parent_pid is not None:
        _exit_with_parent(parent_pid, s.service.embedded_worker_stop_s)
    app = configure(s)
    set_roles(roles)
    import api.build_tasks
    import api.tasks  # noqa: F401

    for handler in logging.getLogger().handlers:  # Celery logs through the root handler at --log-level
        handler.setLevel(log_level.upper())
    n = concurrency or s.service.worker_concurrency
    node = name or f"openscholar@%h-{os.getpid()}"
    names = [q for role, q in (("answer", s.service.queue), ("build", s.service.build_queue)) if role in roles]
    what = f"datastore {s.datastore_path}" if "answer" in roles else f"build parts, embedder.device {s.embedder.device}"
    err.print(f"worker {node}: broker {_redact(broker_url(s))}, queues {','.join(names)}, {what}, {n} process(es)")
    app.worker_main(argv=[
        "worker", f"--concurrency={n}", f"--pool={pool}", f"--hostname={node}", f"--loglevel={log_level}",
        f"--queues={','.join(names)}", "--without-gossip", "--without-mingle",
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
