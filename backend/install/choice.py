"""The install profile this machine gets, told to a program (the Blender add-on) as JSON.

``python -m backend install --venv DIR --profile P --choose`` prints :func:`machine_choice`
as one JSON line; a refused install prints :func:`refused_line` (``REFUSED {...}``) before it
exits with status 3, naming the profile that will work here (``fallback``). Nothing here
imports torch; GPU facts come from ``nvidia-smi``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from backend.gpu.probe import GpuProbe
from backend.install.platform import Check, PlatformReport, ProfileChoice, check_platform

#: The prefix of the line a refused install prints (followed by a JSON object).
REFUSED_PREFIX = "REFUSED "


def _check(c: Check) -> dict[str, Any]:
    return {"name": c.name, "ok": c.ok, "fatal": c.fatal, "message": c.message}


def cpu_fallback(venv: Path, *, tool: str = "auto") -> str | None:
    """``"cpu"`` when this machine can take the cpu profile (a Python that makes venvs,
    disk space), else None."""
    return None if check_platform("cpu", venv, tool=tool).refused else "cpu"


def machine_choice(
    requested: str,
    choice: ProfileChoice,
    venv: Path,
    *,
    probe: GpuProbe | None = None,
    tool: str = "auto",
) -> dict[str, Any]:
    """What ``--choose`` prints: the requested and chosen profile, the reason, every check
    of the chosen profile, the fatal ones (``refused``) and, when the choice would be
    refused, the profile that works here instead (``fallback``)."""
    rep: PlatformReport = check_platform(choice.profile, venv, tool=tool, probe=probe)
    refused = rep.refused
    fallback = cpu_fallback(venv, tool=tool) if refused and choice.profile != "cpu" else None
    return {
        "requested": requested,
        "profile": choice.profile,
        "reason": choice.reason,
        "python": rep.base_python,
        "tool": rep.tool,
        "checks": [_check(c) for c in rep.checks],
        "refused": [_check(c) for c in refused],
        "fallback": fallback,
    }


def refused_line(profile: str, rep: PlatformReport, fallback: str | None) -> str:
    """``REFUSED {"profile": ..., "refused": [...], "fallback": "cpu" | null}``."""
    body = {"profile": profile, "refused": [_check(c) for c in rep.refused], "fallback": fallback}
    return REFUSED_PREFIX + json.dumps(body)
