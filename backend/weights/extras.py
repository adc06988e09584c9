"""Pre-fetching what upstream would otherwise download at run time: MoGe and DINOv2's code.

* MoGe: ``model.pt`` of the repo ``pipeline.yaml`` names (``Ruicheng/moge-vitl``), through
  huggingface_hub (same endpoint, token and resume behaviour as the main weights).
* DINOv2: only the torch.hub code at a pinned commit (a GitHub archive), which builds the
  condition embedders' ViTs. No DINOv2 weights: the generator checkpoints hold the
  embedders' weights (``condition_embedder.*``), and the patched configs build the ViTs with
  ``pretrained=False`` (``backend.engines.sam3d_config``).

``SAM3D_DINOV2_CODE_URL`` replaces the DINOv2 code source (a mirror, or a test server). Every
download resumes with ``Range`` requests from a ``.part`` file
(``backend.weights.hub.resumable_get``). Sizes are bytes.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

from backend.engines.sam3d_config import (
    DINOV2_CODE_URL,
    dinov2_code_dir,
    inspect_checkpoints,
    moge_local_path,
)
from backend.weights.hub import WeightsError, explain, fetch_hub_file, list_remote, resumable_get


def http_download(url: str, dest: Path, *, log: Callable[[str], None] = print) -> Path:
    """A plain (non-Hub) file, resumable; failures as ``WeightsError``."""
    try:
        return resumable_get(url, dest, log=log)
    except Exception as exc:  # noqa: BLE001 - mapped to a sentence
        raise explain(exc, repo_id=url, token=None, dest=dest.parent, what=url) from exc


def fetch_moge(
    checkpoints: Path, repo_id: str, token: str | None, log: Callable[[str], None] = print
) -> Path:
    """``<ckpt>/moge/<owner>--<name>/model.pt`` from the Hub (skipped when present)."""
    final = moge_local_path(checkpoints, repo_id)
    if final.is_file():
        log(f"MoGe {repo_id}: present")
        return final
    try:
        commit, files = list_remote(repo_id, None, token, "")
    except Exception as exc:  # noqa: BLE001 - mapped to a sentence
        raise explain(exc, repo_id=repo_id, token=token, dest=checkpoints) from exc
    rf = next((f for f in files if f.path == "model.pt"), None)
    if rf is None:
        raise WeightsError(
            "not_found", f"{repo_id} has no model.pt (the MoGe repo named in pipeline.yaml)."
        )
    log(f"MoGe {repo_id}: model.pt ({(rf.size or 0) / 1e6:.1f} MB)")
    fetch_hub_file(repo_id, rf, commit, final, final.parent / ".download", token, log)
    shutil.rmtree(final.parent / ".download", ignore_errors=True)
    return final


def fetch_dinov2_code(checkpoints: Path, log: Callable[[str], None] = print) -> Path:
    """The DINOv2 torch.hub code (pinned commit) unpacked into ``<ckpt>/dinov2/code``."""
    code = dinov2_code_dir(checkpoints)
    if (code / "hubconf.py").is_file():
        log("DINOv2 code: present")
        return code
    url = os.environ.get("SAM3D_DINOV2_CODE_URL", DINOV2_CODE_URL)
    log(f"DINOv2 code: {url}")
    archive = http_download(url, code.parent / "code.zip", log=log)
    tmp = Path(tempfile.mkdtemp(prefix="code-", dir=code.parent))
    try:
        with zipfile.ZipFile(archive) as zf:
            for member in zf.infolist():
                parts = Path(member.filename).parts
                if (
                    len(parts) < 2
                    or member.is_dir()
                    or ".." in parts
                    or Path(member.filename).is_absolute()
                ):
                    continue  # drop the archive's top folder; refuse path tricks
                target = tmp.joinpath(*parts[1:])
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(member) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst)
        if not (tmp / "hubconf.py").is_file():
            raise WeightsError(
                "verify", f"{url} holds no hubconf.py: not the DINOv2 torch.hub code."
            )
        if code.exists():
            shutil.rmtree(code)
        os.replace(tmp, code)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    archive.unlink(missing_ok=True)
    return code


def fetch_extras(checkpoints: Path, token: str | None, log: Callable[[str], None] = print) -> None:
    """MoGe (the repo the downloaded pipeline.yaml names) and DINOv2's hub code."""
    status = inspect_checkpoints(checkpoints)
    fetch_moge(checkpoints, status.moge_repo, token, log)
    fetch_dinov2_code(checkpoints, log)
