"""Add-on preferences: which backend, where its files go, and the Install button (bpy)."""

from __future__ import annotations

import os

import bpy
from bpy.props import BoolProperty, EnumProperty, IntProperty, StringProperty

from .. import paths, session
from ..core.asset_metadata import DEFAULT_CATALOG
from ..core.settings import PreferenceValues
from .install_panel import draw_install
from .panels import draw_backend_status

#: The installer's profiles (``python -m backend install --profile``); "auto" lets it choose.
INSTALL_PROFILES = [
    (
        "auto",
        "Automatic",
        "Chosen from this computer: a GPU profile for an NVIDIA GPU that can run SAM 3D, else CPU",
    ),
    ("cuda", "NVIDIA GPU (CUDA)", "Full SAM 3D; the CUDA stack that fits this GPU"),
    (
        "cuda121",
        "NVIDIA GPU, CUDA 12.1",
        "Full SAM 3D with upstream's stack (torch 2.5.1), GPUs up to RTX 40xx / H100",
    ),
    ("cuda128", "NVIDIA GPU, CUDA 12.8", "Full SAM 3D with torch 2.7 (needed by RTX 50xx, B200)"),
    ("cpu", "CPU only (preview)", "The preview engine only; no GPU needed"),
]


class SAM3D_AddonPreferences(bpy.types.AddonPreferences):
    bl_idname = paths.ADDON_ID

    backend_mode: EnumProperty(
        name="Backend",
        items=[
            ("LOCAL", "Managed locally", "Blender starts and stops a backend on this computer"),
            ("REMOTE", "Remote", "Use a backend someone runs elsewhere (e.g. a GPU server)"),
        ],
        default="LOCAL",
    )
    backend_python: StringProperty(
        name="Backend Python",
        description=(
            "Python of the backend's virtual environment. Empty: the one 'Install backend' "
            "created (SAM3D_BACKEND_PYTHON overrides this)"
        ),
        subtype="FILE_PATH",
    )
    install_profile: EnumProperty(
        name="Profile",
        description="What 'Install backend' installs",
        items=INSTALL_PROFILES,
        default="auto",
    )
    show_machine_report: BoolProperty(
        name="What this computer can run",
        description="Show the checks of this computer (the backend's doctor)",
        default=False,
    )
    remote_url: StringProperty(
        name="URL", description="Remote backend, e.g. http://gpu-box:8765", default=""
    )
    remote_token: StringProperty(
        name="Token", description="The remote backend's access token", subtype="PASSWORD"
    )
    remote_ca_file: StringProperty(
        name="CA file",
        description="PEM file of the certificate authority that signed an https backend's "
        "certificate (empty: the system's)",
        subtype="FILE_PATH",
    )
    checkpoints_dir: StringProperty(
        name="Checkpoints",
        description="Folder with the SAM 3D weights (holds pipeline.yaml). Empty: backend default",
        subtype="DIR_PATH",
    )
    cache_dir: StringProperty(
        name="Cache folder",
        description="Jobs and results. Empty: the add-on's user folder",
        subtype="DIR_PATH",
    )
    auto_start: BoolProperty(
        name="Start automatically",
        description="Start the local backend on the first Generate",
        default=True,
    )
    idle_unload_min: IntProperty(
        name="Unload model after (min)",
        description="Free GPU memory after this many idle minutes (0: keep loaded)",
        default=10,
        min=0,
        max=24 * 60,
    )
    show_install_log: BoolProperty(name="Show installer output", default=False)
    asset_catalog: StringProperty(
        name="Asset catalog",
        description=(
            "Catalog of objects marked as assets, e.g. Props/Generated (created in the asset "
            "library's catalog file when missing); the panel may choose another"
        ),
        default=DEFAULT_CATALOG,
    )
    asset_author: StringProperty(
        name="Asset author", description="The author written into each asset's metadata"
    )
    asset_preview: BoolProperty(
        name="Render asset previews",
        description="Render a small preview of each object marked as an asset (Cycles, CPU)",
        default=True,
    )

    def values(self) -> PreferenceValues:
        return PreferenceValues(
            mode=self.backend_mode,
            backend_python=self.backend_python,
            remote_url=self.remote_url,
            remote_token=self.remote_token,
            remote_ca_file=self.remote_ca_file,
            checkpoints_dir=self.checkpoints_dir,
            cache_dir=self.cache_dir,
            auto_start=self.auto_start,
            idle_unload_min=self.idle_unload_min,
        )

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        settings = session.settings()
        layout.prop(self, "backend_mode", expand=True)
        if os.environ.get("SAM3D_BACKEND_URL"):
            layout.label(text="SAM3D_BACKEND_URL is set: it overrides these settings.", icon="INFO")
        box = layout.box()
        if self.backend_mode == "LOCAL":
            box.prop(self, "backend_python")
            if os.environ.get("SAM3D_BACKEND_PYTHON"):
                box.label(text=f"SAM3D_BACKEND_PYTHON overrides: {settings.python}", icon="INFO")
            elif settings.python is None:
                box.label(text="No backend installed yet.", icon="ERROR")
            else:
                box.label(text=f"Using: {settings.python} ({settings.source})")
            draw_install(box, context, self)
            box.prop(self, "checkpoints_dir")
            box.prop(self, "auto_start")
            box.prop(self, "idle_unload_min")
        else:
            box.prop(self, "remote_url")
            box.prop(self, "remote_token")
            box.prop(self, "remote_ca_file")
        layout.prop(self, "cache_dir")
        box = layout.box()
        box.label(text="Assets", icon="ASSET_MANAGER")
        box.prop(self, "asset_catalog")
        box.prop(self, "asset_author")
        box.prop(self, "asset_preview")
        draw_backend_status(layout.box(), context, install=False)


classes = (SAM3D_AddonPreferences,)
