"""What the panels edit and the .blend keeps: ``scene.sam3d`` (the panel's settings and
this file's job History) and ``scene.sam3d_scene`` (the "Photo to scene" sub-panel)."""

from __future__ import annotations

import json
from pathlib import Path

import bpy
from bpy.props import (
    BoolProperty,
    CollectionProperty,
    EnumProperty,
    FloatProperty,
    IntProperty,
    PointerProperty,
    StringProperty,
)

from . import blender_images
from .core.options import DEFAULT_TARGET_FACES, ENGINES, QUALITIES, TEXTURE_SIZES, JobOptions

DEFAULTS = JobOptions()
_ENGINE_TEXT = {
    "auto": ("Auto", "SAM 3D when the backend can run it, else the preview engine"),
    "sam3d": ("SAM 3D", "Meta's SAM 3D Objects (NVIDIA GPU)"),
    "preview": ("Preview", "Fast CPU preview: inflates the mask's silhouette"),
}
_QUALITY_TEXT = {
    "fast": ("Fast", "Fewer diffusion steps"),
    "balanced": ("Balanced", "Default steps"),
    "high": ("High", "More diffusion steps (slower)"),
}
# Enum items of the option properties, one per allowed value of ``core/options.py``.
ENGINE_ITEMS = [(k, *_ENGINE_TEXT[k]) for k in ENGINES]
QUALITY_ITEMS = [(k, *_QUALITY_TEXT[k]) for k in QUALITIES]
TEXTURE_SIZE_ITEMS = [(str(t), f"{t} px", f"{t} x {t} texels") for t in TEXTURE_SIZES]


def _refresh_file_coverage(self: Sam3DSettings, context: bpy.types.Context) -> None:
    """File images are loaded here (update callbacks may create data; draw may not)."""
    try:
        if self.mask_source == "FILE" and self.mask_path:
            blender_images.file_coverage(self.mask_path, use_alpha=False)
        elif self.mask_source == "ALPHA" and self.image_source == "FILE" and self.image_path:
            blender_images.file_coverage(self.image_path, use_alpha=True)
    except (RuntimeError, OSError, ValueError):
        pass  # shown as "unknown" in the panel; Generate reports the real problem


class Sam3DHistoryItem(bpy.types.PropertyGroup):
    """One generated object of this .blend file (saved with it)."""

    job_id: StringProperty(name="Job id")
    label: StringProperty(name="Name")
    engine: StringProperty(name="Engine")
    seed: IntProperty(name="Seed")
    options_json: StringProperty(name="Options (JSON)")
    glb_path: StringProperty(name="GLB", subtype="FILE_PATH")
    source_sha256: StringProperty(name="Source image SHA-256")
    object_name: StringProperty(name="Object")
    created: FloatProperty(name="Created (Unix time)")
    seconds: FloatProperty(name="Seconds from Generate to object")
    state: StringProperty(name="State")
    message: StringProperty(name="Message")

    @property
    def options(self) -> dict:
        """The job options this object was made with (JSON of ``JobOptions.to_json``)."""
        try:
            return json.loads(self.options_json or "{}")
        except ValueError:
            return {}


class Sam3DSettings(bpy.types.PropertyGroup):
    """What the SAM 3D panel edits; ``bpy.ops.sam3d.generate`` reads these unless its own
    properties are given."""

    image_source: EnumProperty(
        name="Image from",
        items=[
            ("IMAGE", "Blender image", "An image already in this file (loaded, packed or painted)"),
            ("FILE", "File", "An image file on disk"),
        ],
        default="IMAGE",
        update=_refresh_file_coverage,
    )
    image: PointerProperty(name="Image", type=bpy.types.Image, update=_refresh_file_coverage)
    image_path: StringProperty(
        name="Image file", subtype="FILE_PATH", update=_refresh_file_coverage
    )
    mask_source: EnumProperty(
        name="Mask from",
        items=[
            ("ALPHA", "Image alpha", "The image's transparent pixels are background"),
            ("IMAGE", "Mask image", "A black/white image in this file (white = object)"),
            ("FILE", "Mask file", "A black/white image file (white = object)"),
        ],
        default="IMAGE",
        update=_refresh_file_coverage,
    )
    mask_image: PointerProperty(name="Mask", type=bpy.types.Image, update=_refresh_file_coverage)
    mask_path: StringProperty(name="Mask file", subtype="FILE_PATH", update=_refresh_file_coverage)

    engine: EnumProperty(
        name="Engine",
        items=ENGINE_ITEMS,
        default=DEFAULTS.engine,
    )
    seed: IntProperty(name="Seed", default=DEFAULTS.seed, min=0, max=2**31 - 1)
    quality: EnumProperty(
        name="Quality",
        items=QUALITY_ITEMS,
        default=DEFAULTS.quality,
    )
    simplify: BoolProperty(
        name="Simplify",
        description="Reduce the mesh to a target face count",
        default=DEFAULTS.target_faces is not None,
    )
    target_faces: IntProperty(
        name="Target faces",
        default=DEFAULT_TARGET_FACES,
        min=100,
        max=2_000_000,
        soft_max=200_000,
    )
    bake: BoolProperty(
        name="Bake texture",
        description="Bake a colour texture (off: vertex colours)",
        default=DEFAULTS.bake,
    )
    texture_size: EnumProperty(
        name="Texture size",
        items=TEXTURE_SIZE_ITEMS,
        default=str(DEFAULTS.texture_size),
    )
    placement: EnumProperty(
        name="Place at",
        items=[
            ("CURSOR", "3D cursor", "Stand the object on the 3D cursor"),
            ("CAMERA", "Camera", "Where the photo shows it, seen from the scene camera"),
        ],
        default="CURSOR",
    )
    add_decimate: BoolProperty(
        name="Decimate modifier",
        description="Add a non-destructive Decimate modifier to simplify further",
        default=True,
    )
    mark_asset: BoolProperty(
        name="Mark as asset",
        description=(
            "Make each new object an asset of this file: with a rendered preview, a catalog, "
            "tags (engine, photo), its source and size in the description"
        ),
        default=False,
    )
    asset_catalog: StringProperty(
        name="Catalog",
        description=(
            "Asset catalog path, e.g. Props/Chairs (created when missing). Empty: the "
            "add-on preferences' catalog"
        ),
        default="",
    )
    history: CollectionProperty(type=Sam3DHistoryItem)
    history_index: IntProperty(default=0)

    def job_options(self) -> JobOptions:
        """The job options these settings ask for."""
        return JobOptions(
            engine=self.engine,
            seed=int(self.seed),
            quality=self.quality,
            target_faces=int(self.target_faces) if self.simplify else None,
            bake=bool(self.bake),
            texture_size=int(self.texture_size),
        )


class Sam3DSceneMask(bpy.types.PropertyGroup):
    """One mask of the sub-panel's list: a Blender image, or a file when no image is set."""

    image: PointerProperty(name="Mask image", type=bpy.types.Image)
    path: StringProperty(name="Mask file", subtype="FILE_PATH")

    def label(self) -> str:
        if self.image is not None:
            return self.image.name
        return Path(self.path).stem if self.path else ""


class Sam3DSceneSettings(bpy.types.PropertyGroup):
    """The "Photo to scene" sub-panel's settings (``scene.sam3d_scene``)."""

    mask_source: EnumProperty(
        name="Masks from",
        items=[
            ("LIST", "Mask list", "Mask images or files chosen one by one"),
            ("FOLDER", "Folder", "A folder of masks named 0.png, 1.png, ..."),
        ],
        default="LIST",
    )
    masks: CollectionProperty(type=Sam3DSceneMask)
    mask_dir: StringProperty(name="Mask folder", subtype="DIR_PATH")
    camera_height: FloatProperty(
        name="Camera height",
        description=(
            "Metres above the ground (z = 0) for the new camera; negative: the engine's own "
            "assumption (preview: 1.2 m, others: at the origin)"
        ),
        default=-1.0,
        soft_min=-1.0,
        soft_max=10.0,
        unit="LENGTH",
    )
    make_scene_camera: BoolProperty(
        name="Make it the scene camera",
        description="Look through the new camera and use the photo's resolution for renders",
        default=True,
    )


classes = (Sam3DHistoryItem, Sam3DSettings, Sam3DSceneMask, Sam3DSceneSettings)


def register_properties() -> None:
    bpy.types.Scene.sam3d = PointerProperty(type=Sam3DSettings)
    bpy.types.Scene.sam3d_scene = PointerProperty(type=Sam3DSceneSettings)


def unregister_properties() -> None:
    del bpy.types.Scene.sam3d_scene
    del bpy.types.Scene.sam3d
