"""The panel's settings (``scene.sam3d``) and this file's job history."""

from __future__ import annotations

import json

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

TEXTURE_SIZES = [(str(s), f"{s} px", f"{s} x {s} texels") for s in (256, 512, 1024, 2048, 4096)]


def _refresh_file_coverage(self: Sam3DSettings, context: bpy.types.Context) -> None:
    """File images are loaded here (update callbacks may create data; draw may not)."""
    from . import image_io

    try:
        if self.mask_source == "FILE" and self.mask_path:
            image_io.file_coverage(self.mask_path, use_alpha=False)
        elif self.mask_source == "ALPHA" and self.image_source == "FILE" and self.image_path:
            image_io.file_coverage(self.image_path, use_alpha=True)
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
        items=[
            ("auto", "Auto", "SAM 3D when the backend can run it, else the preview engine"),
            ("sam3d", "SAM 3D", "Meta's SAM 3D Objects (NVIDIA GPU)"),
            ("preview", "Preview", "Fast CPU preview: inflates the mask's silhouette"),
        ],
        default="auto",
    )
    seed: IntProperty(name="Seed", default=0, min=0, max=2**31 - 1)
    quality: EnumProperty(
        name="Quality",
        items=[
            ("fast", "Fast", "Fewer diffusion steps"),
            ("balanced", "Balanced", "Default steps"),
            ("high", "High", "More diffusion steps (slower)"),
        ],
        default="balanced",
    )
    simplify: BoolProperty(
        name="Simplify", description="Reduce the mesh to a target face count", default=True
    )
    target_faces: IntProperty(
        name="Target faces", default=20000, min=100, max=2_000_000, soft_max=200_000
    )
    bake: BoolProperty(
        name="Bake texture",
        description="Bake a colour texture (off: vertex colours)",
        default=True,
    )
    texture_size: EnumProperty(name="Texture size", items=TEXTURE_SIZES, default="1024")
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
    history: CollectionProperty(type=Sam3DHistoryItem)
    history_index: IntProperty(default=0)

    def job_options(self) -> dict:
        """The backend ``JobOptions`` these settings ask for."""
        return {
            "engine": self.engine,
            "seed": int(self.seed),
            "quality": self.quality,
            "target_faces": int(self.target_faces) if self.simplify else None,
            "bake": bool(self.bake),
            "texture_size": int(self.texture_size),
        }


classes = (Sam3DHistoryItem, Sam3DSettings)


def register_properties() -> None:
    bpy.types.Scene.sam3d = PointerProperty(type=Sam3DSettings)


def unregister_properties() -> None:
    del bpy.types.Scene.sam3d
