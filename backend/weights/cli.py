"""The ``weights`` subcommand: ``download`` and ``verify`` (see ``backend.weights``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from backend.config import checkpoints_dir


def _print(msg: str) -> None:
    print(msg, flush=True)


def cmd_download(args: argparse.Namespace) -> int:
    from backend.weights.extras import fetch_extras
    from backend.weights.hub import REPO_ID, WeightsError, download_repo, resolve_token

    dest = Path(args.dest).expanduser().resolve()
    token = resolve_token(args.token)
    try:
        download_repo(
            dest,
            repo_id=args.repo,
            revision=args.revision,
            token=token,
            subfolder=args.subfolder,
            log=_print,
        )
        if not args.no_extras:
            fetch_extras(dest, token, log=_print)
    except WeightsError as err:
        print(f"error: {err.message}", file=sys.stderr, flush=True)
        return err.exit_code
    except KeyboardInterrupt:
        print("interrupted: re-run the same command to resume", file=sys.stderr)
        return 130
    rc = _verify(dest, check_hash=False, extras=not args.no_extras)
    if rc == 0:
        _print(
            f"SAM 3D weights ready in {dest} ({args.repo}{'' if args.repo == REPO_ID else ', not the default repo'})."
        )
        if dest != checkpoints_dir().expanduser().resolve():
            _print(
                f"The backend looks in {checkpoints_dir()}: set SAM3D_CHECKPOINTS={dest} (the add-on's "
                "preferences do this for you) before starting it."
            )
    return rc


def _verify(dest: Path, *, check_hash: bool, extras: bool = True) -> int:
    from backend.engines.sam3d_config import inspect_checkpoints
    from backend.weights.hub import verify_manifest

    problems = verify_manifest(dest, check_hash=check_hash, log=_print)
    status = inspect_checkpoints(dest)
    if not extras:
        local = ("moge", "dinov2", "torch")
        status.missing = [
            p for p in status.missing if p.relative_to(status.checkpoints).parts[0] not in local
        ]
    problems += [f"missing {p}" for p in status.missing if f"missing {p}" not in problems]
    problems += status.problems
    manifest_missing = problems and problems[0].endswith("only pipeline.yaml's files are checked)")
    if manifest_missing and status.ok:
        _print(f"note: {problems[0]}")
        problems = problems[1:]
    if problems:
        print(f"verify: {len(problems)} problem(s) in {dest}:", file=sys.stderr)
        for p in problems:
            print(f"  - {p}", file=sys.stderr)
        print(f"Fix: python -m backend weights download --dest {dest}", file=sys.stderr, flush=True)
        return 7
    _print(f"verify: OK - {len(status.referenced)} files present in {dest}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    return _verify(Path(args.dest).expanduser().resolve(), check_hash=args.hash)


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``weights download|verify`` to the backend CLI."""
    from backend.weights.hub import REPO_ID, SUBFOLDER

    w = subparsers.add_parser(
        "weights", help="download or verify the SAM 3D weights (gated, ~13 GB)"
    )
    wsub = w.add_subparsers(dest="weights_cmd", required=True)
    d = wsub.add_parser(
        "download", help="fetch facebook/sam-3d-objects + MoGe + DINOv2 (resumable)"
    )
    d.add_argument(
        "--dest",
        default=str(checkpoints_dir()),
        help="checkpoint folder (default: SAM3D_CHECKPOINTS)",
    )
    d.add_argument("--token", help="Hugging Face token (default: HF_TOKEN or `hf auth login`)")
    d.add_argument("--revision", default=None, help="branch, tag or commit (default: main)")
    d.add_argument("--repo", default=REPO_ID, help=argparse.SUPPRESS)
    d.add_argument("--subfolder", default=SUBFOLDER, help=argparse.SUPPRESS)
    d.add_argument("--no-extras", action="store_true", help="skip MoGe and DINOv2")
    d.set_defaults(func=cmd_download)
    v = wsub.add_parser("verify", help="check files and sizes (and --hash: SHA-256)")
    v.add_argument(
        "--dest",
        default=str(checkpoints_dir()),
        help="checkpoint folder (default: SAM3D_CHECKPOINTS)",
    )
    v.add_argument("--hash", action="store_true", help="also compare SHA-256 (reads ~13 GB)")
    v.set_defaults(func=cmd_verify)
    return w
