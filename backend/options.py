"""Job options: one pydantic model shared by the CLI, the HTTP API and the add-on (as JSON).

Face counts are absolute numbers of triangles in the finished mesh (NOT upstream's
``simplify=0.95`` which means "remove 95%"). ``target_ratio`` is the fraction of the dense
mesh's faces to KEEP, used only when ``target_faces`` is unset.

Types are strict: ``{"seed": true}`` or ``{"bake": "yes"}`` is an error, never coerced.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

QualityPreset = Literal["fast", "balanced", "high"]

# Diffusion step counts per preset for the SAM 3D engine (stage 1, stage 2).
PRESET_STEPS: dict[str, tuple[int, int]] = {
    "fast": (12, 12),
    "balanced": (25, 25),
    "high": (50, 50),
}


class FinishOptions(BaseModel):
    """How a dense reconstruction becomes the delivered GLB (see ``backend.finishing``)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    target_faces: int | None = Field(
        20000, ge=100, le=2_000_000, description="Triangles in the finished mesh; null keeps all"
    )
    target_ratio: float | None = Field(
        None, gt=0.0, le=1.0, description="Fraction of faces to KEEP when target_faces is null"
    )
    bake: bool = Field(True, description="Bake a base-colour texture; false keeps vertex colours")
    texture_size: int = Field(1024, ge=256, le=4096, description="Texture edge in texels")
    fill_holes: bool = Field(True, description="Close small holes before simplifying")
    remove_floaters: bool = Field(True, description="Drop small disconnected pieces")
    untextured_fallback: bool = Field(
        True, description="If baking fails, still deliver the mesh with vertex colours"
    )

    @model_validator(mode="after")
    def _power_of_two_texture(self) -> FinishOptions:
        ts = self.texture_size
        if ts & (ts - 1):
            raise ValueError(f"texture_size must be a power of two (256..4096), got {ts}")
        return self


class JobOptions(FinishOptions):
    """Everything a job request may set besides the image and the mask."""

    engine: str = Field(
        "auto", max_length=64, description="auto | preview | sam3d (auto: sam3d when it can run)"
    )
    seed: int = Field(0, ge=0, le=2**31 - 1)
    quality: QualityPreset = "balanced"

    @model_validator(mode="after")
    def _engine_lowercase(self) -> JobOptions:
        self.engine = self.engine.strip().lower()
        return self
