"""Which backend to use, from the preferences and the environment (bpy-free).

Environment variables win over the preferences so pipelines, CI and tests can steer the
add-on without touching a user's settings:

| variable              | effect                                                     |
|-----------------------|------------------------------------------------------------|
| SAM3D_BACKEND_URL     | use the remote backend at this URL (with the token below)  |
| SAM3D_BACKEND_TOKEN   | token for that remote backend                              |
| SAM3D_BACKEND_CA_FILE | CA certificate (PEM) for an https remote backend           |
| SAM3D_BACKEND_PYTHON  | managed backend: start it with this Python                 |
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .installer import venv_python


@dataclass
class PreferenceValues:
    """The preference values that matter for choosing a backend (plain data, no bpy).

    ``mode``: "LOCAL" (managed subprocess) or "REMOTE". Paths are strings as typed by the
    user ("" = default). ``idle_unload_min``: minutes; 0 keeps the model loaded.
    """

    mode: str = "LOCAL"
    backend_python: str = ""
    remote_url: str = ""
    remote_token: str = ""
    remote_ca_file: str = ""  # PEM of the CA that signed an https backend's certificate
    checkpoints_dir: str = ""
    cache_dir: str = ""
    auto_start: bool = True
    idle_unload_min: int = 10


@dataclass
class BackendSettings:
    """The resolved choice. ``source`` says where the choice came from, for the UI."""

    mode: str  # "LOCAL" | "REMOTE"
    python: Path | None = None
    url: str = ""
    token: str = ""
    ca_file: str = ""  # "" trusts the system's certificate authorities
    cache_dir: Path = field(default_factory=Path)
    checkpoints: Path | None = None
    idle_unload_s: float | None = None
    auto_start: bool = True
    source: str = "preferences"

    @property
    def data_dir(self) -> Path:
        """The managed backend's job store (SAM3D_DATA_DIR)."""
        return self.cache_dir / "jobs"

    @property
    def results_dir(self) -> Path:
        """Where downloaded GLBs go (one folder per job id)."""
        return self.cache_dir / "results"


def resolve(prefs: PreferenceValues, env: Mapping[str, str], user_dir: Path) -> BackendSettings:
    """Combine preferences, environment and the add-on's user folder into one choice.

    ``user_dir`` is ``bpy.utils.extension_path_user(<package>)``: the default cache lives
    there, and so does the venv the installer creates (``<user_dir>/venv``).
    """
    cache = Path(prefs.cache_dir).expanduser() if prefs.cache_dir.strip() else user_dir / "cache"
    checkpoints = (
        Path(prefs.checkpoints_dir).expanduser() if prefs.checkpoints_dir.strip() else None
    )
    idle = float(prefs.idle_unload_min * 60) if prefs.idle_unload_min > 0 else None
    common: dict[str, Any] = dict(
        cache_dir=cache,
        checkpoints=checkpoints,
        idle_unload_s=idle,
        auto_start=prefs.auto_start,
    )
    url = env.get("SAM3D_BACKEND_URL", "").strip()
    if url:
        return BackendSettings(
            mode="REMOTE",
            url=url,
            token=env.get("SAM3D_BACKEND_TOKEN", ""),
            ca_file=env.get("SAM3D_BACKEND_CA_FILE", "").strip(),
            source="SAM3D_BACKEND_URL",
            **common,
        )
    if prefs.mode == "REMOTE":
        return BackendSettings(
            mode="REMOTE",
            url=prefs.remote_url.strip(),
            token=prefs.remote_token,
            ca_file=prefs.remote_ca_file.strip(),
            **common,
        )
    env_python = env.get("SAM3D_BACKEND_PYTHON", "").strip()
    if env_python:
        return BackendSettings(
            mode="LOCAL", python=Path(env_python), source="SAM3D_BACKEND_PYTHON", **common
        )
    if prefs.backend_python.strip():
        return BackendSettings(
            mode="LOCAL", python=Path(prefs.backend_python).expanduser(), **common
        )
    found = default_venv_python(user_dir)
    return BackendSettings(
        mode="LOCAL",
        python=found,
        source="installed venv" if found else "not installed",
        **common,
    )


def default_venv_dir(user_dir: Path) -> Path:
    """Where the Install button puts the backend's virtual environment."""
    return user_dir / "venv"


def default_venv_python(user_dir: Path) -> Path | None:
    """The installer-created venv's Python when it exists."""
    p = venv_python(default_venv_dir(user_dir))
    return p if p.is_file() else None
