"""The ``install`` subcommand: ``python -m backend install --venv DIR --profile P [--dry-run]``.

``P``: ``auto`` (the machine decides: a CUDA profile when an NVIDIA GPU can run SAM 3D, else
``cpu``), ``cuda`` (the CUDA stack that fits the GPU: ``cuda121`` or ``cuda128``), or one of
those by name. ``--choose`` prints the choice, its reason and the checks as JSON (what the
Blender add-on shows before installing). ``--assume-gpu "NAME,CC,MEMORY_MIB[,DRIVER]"`` plans for a card that is not in
this machine (with ``--dry-run``: what would be installed on an RTX 5090, say).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from backend.config import checkpoints_dir


def cmd_install(args: argparse.Namespace) -> int:
    from backend.gpu.probe import probe_gpus
    from backend.install.choice import cpu_fallback, machine_choice, refused_line
    from backend.install.plan import build_plan
    from backend.install.platform import assumed_probe, check_platform, choose_profile
    from backend.install.runner import Runner, default_out

    out = default_out
    venv = Path(args.venv).expanduser().absolute()
    try:
        probe = assumed_probe(args.assume_gpu) if args.assume_gpu else probe_gpus(use_cache=False)
    except ValueError as exc:
        out(f"error: {exc}")
        return 2
    choice = choose_profile(probe, args.profile)
    profile = choice.profile
    if args.choose:
        out(json.dumps(machine_choice(args.profile, choice, venv, probe=probe, tool=args.tool)))
        return 0
    if profile != args.profile:
        out(f"profile {args.profile} -> {profile}: {choice.reason}")
    weights = (
        Path(args.weights_dest).expanduser()
        if args.weights_dest
        else (checkpoints_dir() if profile != "cpu" else None)
    )
    rep = check_platform(
        profile, venv, weights_dest=weights, tool=args.tool, probe=probe, cuda_arch=args.cuda_arch
    )
    args.profile = profile
    out(f"install profile {args.profile} into {venv} with {rep.tool}")
    for c in rep.checks:
        out("  " + c.line())
    if rep.refused:
        verb = "would refuse" if args.dry_run else "refusing"
        out(f"{verb}: this machine cannot take the {args.profile} profile:")
        for c in rep.refused:
            out(f"  - {c.name}: {c.message}")
        if not args.dry_run:
            fallback = cpu_fallback(venv, tool=args.tool) if args.profile != "cpu" else None
            out(refused_line(args.profile, rep, fallback))
            if fallback:
                out(
                    "The preview engine still works here: python -m backend install --profile cpu --venv DIR"
                )
            return 3
    plan = build_plan(
        venv,
        args.profile,
        tool=rep.tool,
        base_python=rep.base_python,
        cuda_arch_list=rep.cuda_arch_list,
        compute_capability=rep.compute_capability,
        source=Path(args.source) if args.source else None,
        max_jobs=args.max_jobs,
    )
    if args.redo:
        unknown = set(args.redo) - {s.name for s in plan.steps}
        if unknown:
            out(
                f"--redo: no step named {', '.join(sorted(unknown))} (steps: {', '.join(s.name for s in plan.steps)})"
            )
            return 2
        for step in plan.steps:
            if step.name in args.redo:
                step.satisfied_by = []
    rc = Runner(plan, out).run(dry_run=args.dry_run)
    if rc == 0 and not args.dry_run:
        out(f"backend ready: {plan.python} -m backend doctor")
        if args.profile != "cpu":
            out(f"weights next: {plan.python} -m backend weights download --dest {weights}")
    return rc


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``install`` to the backend CLI."""
    p = subparsers.add_parser(
        "install", help="create the backend venv (profile cuda: SAM 3D; cpu: preview only)"
    )
    p.add_argument("--venv", required=True, help="folder of the venv to create or complete")
    p.add_argument(
        "--profile",
        choices=("auto", "cuda", "cuda121", "cuda128", "cpu"),
        default="auto",
        help="auto: from this machine's GPU (cpu without one); cuda: the CUDA stack that fits "
        "the GPU (cuda121: torch 2.5.1, compute capability <= 9.0; cuda128: torch 2.7, RTX 50xx)",
    )
    p.add_argument(
        "--assume-gpu",
        metavar="NAME,CC,MEMORY_MIB[,DRIVER]",
        help='plan for this GPU instead of the detected ones, e.g. "NVIDIA GeForce RTX 5090,12.0,32607"',
    )
    p.add_argument(
        "--choose",
        action="store_true",
        help="print the profile this machine gets, why, and the checks that would refuse it, "
        "as one JSON line; install nothing (the Blender add-on shows it before installing)",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print the checks and the exact commands, run nothing",
    )
    p.add_argument(
        "--tool",
        choices=("auto", "uv", "pip"),
        default="auto",
        help="auto: uv when on PATH, else pip",
    )
    p.add_argument(
        "--cuda-arch",
        help="TORCH_CUDA_ARCH_LIST for source builds (default: from nvidia-smi), e.g. 8.6",
    )
    p.add_argument(
        "--weights-dest",
        help="where the weights will go, for the disk check (default: SAM3D_CHECKPOINTS)",
    )
    p.add_argument(
        "--source", help="project folder to install the backend from (default: this checkout)"
    )
    p.add_argument(
        "--max-jobs", type=int, help="parallel compile jobs for source builds (MAX_JOBS)"
    )
    p.add_argument(
        "--redo",
        action="append",
        default=[],
        metavar="STEP",
        help="run STEP even if satisfied (repeatable)",
    )
    p.set_defaults(func=cmd_install)
    return p
