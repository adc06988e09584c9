"""``python -m backend`` - generate, serve, doctor (and install / weights).

Exit codes: 0 ok; 1 the job failed; 2 bad input or usage; 3 the server could not start.
Machine-readable output goes to stdout (the ready line, the GLB path); progress and
messages go to stderr.
"""

from __future__ import annotations

import argparse
import importlib.util
import ipaddress
import json
import os
import platform
import shutil
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from backend import API_VERSION, __version__
from backend.errors import BackendError

if TYPE_CHECKING:
    from backend.jobs.job_dir import JobInputs


def _pid_alive(pid: int) -> bool:
    """True while process ``pid`` runs; one that exited but was not reaped yet (a zombie)
    is gone for our purposes."""
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:  # ZombieProcess included
        return False
    except psutil.AccessDenied:
        return True


# -- generate -------------------------------------------------------------------------------
class _Progress:
    """A rich progress bar on a terminal, plain ``progress`` lines otherwise (stderr)."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self._last = (None, -1.0)
        self._bar = None
        if self.tty:
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self._bar = Progress(
                TextColumn("{task.description:<12}"),
                BarColumn(),
                TextColumn("{task.percentage:>3.0f}%"),
                TimeElapsedColumn(),
                console=Console(stderr=True),
                transient=False,
            )
            self._task = self._bar.add_task("starting", total=1.0)
            self._bar.start()

    def update(self, stage: str, fraction: float) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=fraction, description=stage)
            return
        pct = round(fraction * 100)
        if stage != self._last[0] or pct - self._last[1] >= 10:
            print(f"progress {pct:3d}% {stage}", file=sys.stderr, flush=True)
            self._last = (stage, pct)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=1.0)
            self._bar.stop()


def _check_writable(path: Path, what: str) -> None:
    """Fail before any work when ``path`` can't be written: create its folder, then really
    create and remove a file beside it (permission bits say nothing to root, nor about
    /proc or a read-only disk)."""
    try:
        if path.is_dir():
            raise BackendError(
                "output_not_writable",
                f"cannot write the {what} {path}: it is a folder; give a file name.",
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", delete=True):
            pass
    except OSError as exc:
        raise BackendError(
            "output_not_writable",
            f"cannot write the {what} {path}: {exc.strerror or exc}.",
        ) from None


@contextmanager
def _output_errors(what: str, dest: Path) -> Iterator[None]:
    """An ``OSError`` while writing the output ``dest`` becomes ``output_not_writable``."""
    try:
        yield
    except OSError as exc:
        raise BackendError(
            "output_not_writable", f"cannot write the {what} {dest}: {exc.strerror or exc}."
        ) from None


def _copy_output(src: Path, dest: Path) -> None:
    """Copy ``src`` to the output file ``dest`` through a temporary name (no half file on a
    full disk)."""
    from backend.storage import atomic_path

    with _output_errors("output file", dest), atomic_path(dest) as tmp:
        shutil.copyfile(src, tmp)


def cmd_generate(args: argparse.Namespace) -> int:
    """One job in this process: the files through the server's intake into a temporary job
    folder, run there, the results copied out."""
    from pydantic import ValidationError

    from backend.engines.registry import resolve_engine
    from backend.job_context import Cancelled
    from backend.jobs.intake import Submission, read_input_file, read_mask_folder
    from backend.options import JobOptions

    given = {
        "engine": args.engine,
        "seed": args.seed,
        "target_faces": args.target_faces,
        "texture_size": args.texture_size,
        "quality": args.quality,
        "bake": False if args.no_bake else None,
    }
    try:
        opts = JobOptions(**{k: v for k, v in given.items() if v is not None})
    except ValidationError as exc:
        msg = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        print(f"error [bad_options]: {msg}", file=sys.stderr)
        return 2
    out = Path(args.out)
    report = Path(args.report) if args.report else None
    try:
        engine = resolve_engine(opts.engine)
        image = read_input_file(args.image, "image")
        masks: bytes | list[bytes] | None = None
        if args.masks:
            masks = read_mask_folder(args.masks)
        elif args.mask:
            masks = read_input_file(args.mask, "mask")
        inputs = Submission(image, masks, opts.model_copy(update={"engine": engine})).prepare()
        _check_writable(out, "output file")
        if report is not None:
            _check_writable(report, "report")
    except BackendError as exc:
        print(f"error [{exc.code}]: {exc.message}", file=sys.stderr)
        return 2
    for w in inputs.warnings:
        print(f"warning: {w}", file=sys.stderr)
    t0 = time.perf_counter()
    try:
        result = _run_in_temporary_folder(inputs, out, report)
    except Cancelled:
        print("cancelled", file=sys.stderr)
        return 1
    except BackendError as exc:
        print(f"error [{exc.code}]: {exc.message}", file=sys.stderr)
        return 1
    _print_outcome(result, engine, out, time.perf_counter() - t0)
    return 0


def _run_in_temporary_folder(inputs: JobInputs, out: Path, report: Path | None) -> dict:
    """Run ``inputs`` in a temporary job folder, then write ``out`` (and a scene's
    ``<out>_<i>.glb``, and ``report``). Raises ``Cancelled``, else only ``BackendError``."""
    from backend.job_context import Cancelled, JobContext
    from backend.jobs.job_dir import JobDir
    from backend.jobs.run import classify_exception, run_job
    from backend.storage import write_json_atomic

    bar = _Progress()
    ctx = JobContext(on_update=bar.update)
    try:
        with tempfile.TemporaryDirectory(prefix="sam3d-job-") as tmp:
            job = JobDir(Path(tmp))
            job.write_inputs(inputs)
            result = run_job(job, ctx)
            bar.close()
            _copy_output(job.result_glb, out)
            if report is not None:
                result["warnings"] = inputs.warnings + result.get("warnings", [])
                with _output_errors("report", report):
                    write_json_atomic(report, result)
            for part in result.get("parts", []):
                if part.get("state") == "done":
                    dest = out.with_name(f"{out.stem}_{part['index']}.glb")
                    _copy_output(job.part_glb(part["index"]), dest)
    except Cancelled:
        bar.close()
        raise
    except BaseException as exc:  # noqa: BLE001 - every failure gets a code and a sentence
        bar.close()
        raise classify_exception(exc, ctx.current, Path(tempfile.gettempdir())) from None
    return result


def _print_outcome(result: dict, engine: str, out: Path, seconds: float) -> None:
    for w in result.get("warnings", []):
        print(f"warning: {w}", file=sys.stderr)
    for part in result.get("parts", []):
        if part.get("state") == "failed":
            err = part.get("error") or {}
            print(
                f"warning: object {part['index']} failed [{err.get('code')}]: {err.get('message')}",
                file=sys.stderr,
            )
    stats = result.get("stats", {})
    print(
        f"{result.get('state', 'done')} in {seconds:.1f} s: engine {engine}, "
        + (f"{stats.get('faces')} faces, " if stats else f"{len(result.get('parts', []))} parts, ")
        + f"{out.stat().st_size / 1024:.0f} KiB",
        file=sys.stderr,
    )
    print(str(out.resolve()))


# -- serve ----------------------------------------------------------------------------------
#: Listen queue, and so the most connections asyncio accepts in one go.
_BACKLOG = 128
#: File descriptors kept for everything but client connections: a connection the cap closes
#: frees its descriptor a few event-loop turns after it was accepted, and each turn may
#: accept a batch more (3 batches); then job files, worker pipes, logs.
_FD_RESERVE = 3 * _BACKLOG + 128


def _connection_budget(wanted: int) -> int:
    """Raise this process's open-file limit towards its hard limit so ``wanted`` connections
    fit beside ``_FD_RESERVE``; returns the connection cap that does fit."""
    try:
        import resource
    except ImportError:  # Windows: no descriptor limit of this kind
        return wanted
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = wanted + _FD_RESERVE
    if soft != resource.RLIM_INFINITY and soft < need:
        new = need if hard == resource.RLIM_INFINITY else min(need, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
            soft = new
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(16, min(wanted, soft - _FD_RESERVE))


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _ray_unreachable(args: argparse.Namespace) -> str | None:
    """Why ``--ray-address host:port`` cannot be joined (nothing listens there), or None
    (Ray itself would keep trying for minutes)."""
    address = args.ray_address or ""
    if args.executor != "ray" or "://" in address or ":" not in address:
        return None
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
    except (OSError, ValueError) as exc:
        return (
            f"cannot reach the Ray cluster at {address} ({exc}); start its head node with "
            "'ray start --head' there, or correct --ray-address"
        )
    return None


def _tls_problem(args: argparse.Namespace) -> str | None:
    """Why these serve arguments must not run (tokens in clear text on a network), or None."""
    if bool(args.ssl_certfile) != bool(args.ssl_keyfile):
        return "--ssl-certfile and --ssl-keyfile go together (the certificate and its key)"
    for path in (args.ssl_certfile, args.ssl_keyfile):
        if path and not Path(path).is_file():
            return f"{path} does not exist"
    if args.ssl_certfile or args.insecure_no_tls or _is_loopback(args.host):
        return None
    return (
        f"--host {args.host} is reachable from other machines: give the server a TLS "
        "certificate (--ssl-certfile CERT --ssl-keyfile KEY) so tokens never cross the "
        "network in clear text, or pass --insecure-no-tls on a network you trust"
    )


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from backend.api.artists import TokenBook, TokensFileError
    from backend.api.state import ServerSettings
    from backend.config import data_dir
    from backend.http_protocol import ConnectionLimits, protocol_class
    from backend.server import create_app

    token: str | TokenBook | None = os.environ.get("SAM3D_BACKEND_TOKEN") or None
    if args.tokens_file:
        if token is not None:
            print(
                "error: use either SAM3D_BACKEND_TOKEN (one shared token) or --tokens-file "
                "(one token per artist), not both; unset SAM3D_BACKEND_TOKEN",
                file=sys.stderr,
            )
            return 2
        try:
            token = TokenBook(Path(args.tokens_file))
        except TokensFileError as exc:
            print(f"error [bad_tokens_file]: {exc}", file=sys.stderr)
            return 2
    if token is None and not args.insecure_no_token:
        print(
            "error: set SAM3D_BACKEND_TOKEN to the access token clients must send, or pass "
            "--tokens-file with the artists' tokens "
            "(or pass --insecure-no-token for local debugging only)",
            file=sys.stderr,
        )
        return 2
    if args.executor == "ray" and importlib.util.find_spec("ray") is None:
        print(
            "error: --executor ray needs Ray, which the backend's cluster extra installs "
            "(pip install 'sam3d-blender[cluster]'; see docs/CLUSTER.md)",
            file=sys.stderr,
        )
        return 2
    unreachable = _ray_unreachable(args)
    if unreachable:
        print(f"error: {unreachable}", file=sys.stderr)
        return 3
    tls = _tls_problem(args)
    if tls:
        print(f"error: {tls}", file=sys.stderr)
        return 2
    if args.parent_pid is not None and not _pid_alive(args.parent_pid):
        print(f"error: parent process {args.parent_pid} is not running", file=sys.stderr)
        return 2
    gpus = None
    if args.gpus:
        from backend.gpu.assignment import resolve_gpus

        try:
            gpus = resolve_gpus(args.gpus)
        except BackendError as exc:
            print(f"error [{exc.code}]: {exc.message}", file=sys.stderr)
            return 2
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    if sys.platform != "win32":
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((args.host, args.port))
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port}: {exc.strerror}", file=sys.stderr)
        return 3
    # Responses go out as two writes (head, body); without NODELAY, Nagle + the client's
    # delayed ACK add ~40 ms to every request on a kept-alive connection.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.listen(_BACKLOG)
    port = sock.getsockname()[1]
    ddir = Path(args.data_dir) if args.data_dir else data_dir()

    def ready() -> None:
        line = {
            "event": "ready",
            "port": port,
            "host": args.host,
            "version": __version__,
            "api_version": API_VERSION,
            "pid": os.getpid(),
            "data_dir": str(ddir),
            "gpus": gpus,
            "tls": bool(args.ssl_certfile),
            "executor": args.executor,
        }
        sys.stdout.write(json.dumps(line) + "\n")
        sys.stdout.flush()

    limits = ConnectionLimits(
        header_timeout_s=args.header_timeout,
        body_timeout_s=args.body_timeout,
        max_connections=_connection_budget(args.max_connections),
    )
    settings = ServerSettings(
        data_dir=ddir,
        token=token,
        workers=args.workers,
        gpus=gpus,
        cancel_grace_s=args.cancel_grace,
        max_upload_bytes=int(args.max_upload_mb * 2**20),
        max_pixels=int(args.max_megapixels * 1e6),
        min_free_bytes=int(args.min_free_mb * 2**20),
        connection_limits=limits,
        on_ready=ready,
        executor=args.executor,
        ray_address=args.ray_address,
        ray_gpu_resource=args.ray_gpu_resource,
        ray_gpu_actors=args.ray_gpu_actors,
        ray_cpu_actors=args.ray_cpu_actors,
    )
    try:
        app = create_app(settings)
    except BackendError as exc:
        print(f"error [{exc.code}]: {exc.message}", file=sys.stderr)
        return 3
    # uvicorn's own limit_concurrency is not used: it answers 503 only once a whole request
    # head has arrived (half-open connections still pile up), and it would refuse /health
    # too. The connection cap, with its eviction, lives in the protocol instead.
    config = uvicorn.Config(
        app,
        log_level=args.log_level,
        access_log=False,
        timeout_graceful_shutdown=2,
        http=protocol_class(limits),
        timeout_keep_alive=5,
        backlog=_BACKLOG,
        ssl_certfile=args.ssl_certfile,
        ssl_keyfile=args.ssl_keyfile,
    )
    server = uvicorn.Server(config)
    if args.parent_pid is not None:

        def watch_parent() -> None:
            while not server.should_exit:
                if not _pid_alive(args.parent_pid):
                    print(
                        f"parent process {args.parent_pid} exited; shutting down",
                        file=sys.stderr,
                        flush=True,
                    )
                    server.should_exit = True
                    return
                time.sleep(0.5)

        threading.Thread(target=watch_parent, daemon=True, name="parent-watch").start()
    server.run(sockets=[sock])
    return 0


# -- doctor ---------------------------------------------------------------------------------
def cmd_doctor(args: argparse.Namespace) -> int:
    from backend.config import checkpoints_dir, data_dir
    from backend.engines.registry import engine_report, resolve_engine
    from backend.gpu.probe import probe_gpus
    from backend.install.platform import assumed_probe, choose_profile
    from backend.machine import gpu_summary

    report = engine_report()
    try:
        probe = assumed_probe(args.assume_gpu) if args.assume_gpu else probe_gpus()
    except ValueError as exc:
        print(f"error [bad_options]: {exc}", file=sys.stderr)
        return 2
    choice = choose_profile(probe, "auto")
    info = {
        "python": f"{sys.version.split()[0]} ({sys.executable})",
        "platform": f"{platform.system()} {platform.machine()}",
        "backend_version": __version__,
        "api_version": API_VERSION,
        "data_dir": str(data_dir()),
        "checkpoints_dir": str(checkpoints_dir()),
        "gpu": gpu_summary(),
        "engines": {k: {"available": v.available, "reason": v.reason} for k, v in report.items()},
        "auto_engine": resolve_engine("auto", report),
        "install_profile": {"profile": choice.profile, "reason": choice.reason},
    }
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"SAM 3D for Blender backend {__version__} (API {API_VERSION})")
    print(f"python:       {info['python']}")
    print(f"platform:     {info['platform']}")
    print(f"data dir:     {info['data_dir']}")
    print(f"checkpoints:  {info['checkpoints_dir']}")
    gpus = info["gpu"]
    print(
        "gpu:          "
        + (
            ", ".join(f"{g.get('name')} ({g.get('memory_total_mb')} MB)" for g in gpus)
            if gpus
            else "none found"
        )
    )
    print("engines:")
    for name, a in report.items():
        state = "available" if a.available else "UNAVAILABLE"
        print(f"  {name:<9} {state}")
        for line in (a.reason or "").split("\n"):
            if line.strip():
                print(f"            - {line.strip()}")
    print(f"auto picks:   {info['auto_engine']}")
    print(f"install:      profile {choice.profile}: {choice.reason}")
    print(f"              (python -m backend install --venv DIR --profile {choice.profile})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m backend", description="SAM 3D for Blender backend")
    p.add_argument("--version", action="version", version=__version__)
    sub = p.add_subparsers(dest="command", required=True)

    g = sub.add_parser("generate", help="image + mask -> textured GLB (the main job)")
    g.add_argument("--image", required=True, help="photo (PNG, JPEG, ...)")
    g.add_argument("--mask", help="mask image (alpha or brightness); default: the image's alpha")
    g.add_argument(
        "--masks", help="folder of masks 0.png, 1.png, ...: one scene GLB with every object"
    )
    # Options left out take JobOptions' defaults (the API's), filled in by cmd_generate:
    # this parser also serves ``install``, which runs on Pythons without pydantic.
    g.add_argument("--engine", help="auto | preview | sam3d (default auto)")
    g.add_argument("--seed", type=int)
    g.add_argument("--quality", help="fast | balanced | high (default balanced)")
    g.add_argument("--target-faces", type=int, help="triangles in the result (absolute count)")
    g.add_argument("--texture-size", type=int, help="texture edge in texels (power of two)")
    g.add_argument(
        "--no-bake", action="store_true", help="keep vertex colours instead of baking a texture"
    )
    g.add_argument("--out", required=True, help="output .glb path")
    g.add_argument("--report", help="also write result.json (pose, stats, timings) here")
    g.set_defaults(func=cmd_generate)

    s = sub.add_parser("serve", help="run the HTTP API")
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback only)")
    s.add_argument(
        "--port", type=int, default=0, help="0 picks a free port (reported on the ready line)"
    )
    s.add_argument(
        "--data-dir", help="job store folder (default: SAM3D_DATA_DIR or the user data dir)"
    )
    s.add_argument("--parent-pid", type=int, help="exit when this process exits (Blender's pid)")
    s.add_argument("--workers", type=int, default=1, help="worker processes (unpinned; see --gpus)")
    s.add_argument(
        "--gpus",
        help="one worker pinned to each GPU: 'all', or nvidia-smi indices like 0,1 "
        "(overrides --workers; a further job waits for a free GPU)",
    )
    s.add_argument(
        "--cancel-grace",
        type=float,
        default=3.0,
        help="seconds a job gets to stop before its worker is killed",
    )
    s.add_argument("--max-upload-mb", type=float, default=64, help="largest accepted upload file")
    s.add_argument(
        "--max-megapixels", type=float, default=16, help="larger photos are downscaled to this"
    )
    s.add_argument(
        "--min-free-mb",
        type=float,
        default=64,
        help="refuse new jobs (disk_full) when the data folder's disk has less free space",
    )
    s.add_argument(
        "--header-timeout",
        type=float,
        default=5.0,
        help="seconds a client gets to send a request's head before its connection closes",
    )
    s.add_argument(
        "--body-timeout",
        type=float,
        default=30.0,
        help="seconds without a byte of an upload before its connection closes",
    )
    s.add_argument(
        "--max-connections",
        type=int,
        default=2000,
        help="open connections at most (more close the one idle longest)",
    )
    s.add_argument(
        "--tokens-file",
        help="one token per artist (hashes; see 'tokens add'): each artist sees only their "
        "own jobs; reloaded when it changes (instead of SAM3D_BACKEND_TOKEN)",
    )
    s.add_argument("--ssl-certfile", help="serve HTTPS with this certificate (PEM)")
    s.add_argument("--ssl-keyfile", help="the certificate's private key (PEM)")
    s.add_argument(
        "--insecure-no-tls",
        action="store_true",
        help="allow plain HTTP on an address other machines reach (a trusted network only)",
    )
    s.add_argument(
        "--executor",
        choices=("local", "ray"),
        default="local",
        help="run jobs in worker processes here (local) or on a Ray cluster's actors "
        "(ray: needs the cluster extra; see docs/CLUSTER.md)",
    )
    s.add_argument(
        "--ray-address",
        help="the Ray cluster to join, e.g. head-node:6379 or auto (default: start Ray here)",
    )
    s.add_argument(
        "--ray-gpu-resource",
        default="GPU",
        help="the Ray resource one GPU actor takes (default GPU; a custom name simulates "
        "GPU slots)",
    )
    s.add_argument(
        "--ray-gpu-actors", type=int, help="GPU actors (default: one per GPU of the cluster)"
    )
    s.add_argument(
        "--ray-cpu-actors", type=int, help="CPU actors for preview (default: one per node)"
    )
    s.add_argument("--log-level", default="warning")
    s.add_argument(
        "--insecure-no-token",
        action="store_true",
        help="accept requests without a token (debugging only)",
    )
    s.set_defaults(func=cmd_serve)

    d = sub.add_parser("doctor", help="explain what can run here and why not")
    d.add_argument("--json", action="store_true")
    d.add_argument(
        "--assume-gpu",
        metavar="NAME,CC,MEMORY_MIB[,DRIVER]",
        help="say which install profile would apply to this GPU instead of the detected ones",
    )
    d.set_defaults(func=cmd_doctor)

    for module, attr in (
        ("backend.install.cli", "register"),
        ("backend.weights", "register"),
        ("backend.masking.cli", "register"),
        ("backend.api.artists", "register"),
    ):
        try:
            mod = __import__(module, fromlist=[attr])
        except ImportError:
            continue
        getattr(mod, attr)(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)
