"""Test data: synthetic sub-models sized like SAM 3D Objects' (for the residency tests and
benchmark).

Each ``SyntheticModel`` holds ``nbytes`` of bf16 parameters in 256 MiB slabs and, when
called, multiplies a (tokens x width) activation with every slab, so a stage really reads
all its weights and allocates working memory like a transformer layer stack would.

``SAM3D_SIZES_GB`` lists the sub-models of upstream's pipeline with their approximate weight
sizes in GB (10**9 bytes): checkpoint sizes from the Hugging Face repo for the generators
and decoders, ViT-L parameter counts (~0.3 G) in float32 for MoGe and DINOv2.
"""

from __future__ import annotations

from typing import Any

SAM3D_SIZES_GB: dict[str, float] = {
    "depth_model": 1.3,
    "ss_condition_embedder": 1.2,
    "ss_generator": 6.3,
    "ss_decoder": 0.15,
    "slat_condition_embedder": 1.2,
    "slat_generator": 4.6,
    "slat_decoder_mesh": 0.35,
    "slat_decoder_gs": 0.2,
    "slat_decoder_gs_4": 0.2,
}

#: Stage -> sub-models, in the order upstream's pipeline runs them.
SAM3D_STAGES: dict[str, list[str]] = {
    "depth": ["depth_model"],
    "condition_ss": ["ss_condition_embedder"],
    "sparse_structure": ["ss_generator", "ss_decoder"],
    "condition_slat": ["slat_condition_embedder"],
    "latent": ["slat_generator"],
    "decode": ["slat_decoder_mesh", "slat_decoder_gs", "slat_decoder_gs_4"],
}

WIDTH = 4096
SLAB_BYTES = 256 << 20


def make_synthetic(nbytes: int, width: int = WIDTH) -> Any:
    """A ``torch.nn.Module`` with ``nbytes`` (rounded to whole rows) of bf16 weights, on CPU."""
    import torch

    class SyntheticModel(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            rows_total = max(1, nbytes // (2 * width))
            slab_rows = max(1, SLAB_BYTES // (2 * width))
            slabs = []
            while rows_total > 0:
                r = min(slab_rows, rows_total)
                slabs.append(
                    torch.nn.Parameter(
                        torch.zeros(r, width, dtype=torch.bfloat16), requires_grad=False
                    )
                )
                rows_total -= r
            self.slabs = torch.nn.ParameterList(slabs)

        def forward(self, x: Any) -> Any:
            acc = torch.zeros_like(x)
            for w in self.slabs:
                y = x @ w.t()  # (tokens, rows): working memory like an MLP's hidden layer
                acc = acc + y[:, : x.shape[1]] if y.shape[1] >= x.shape[1] else acc
                del y
            return acc

    return SyntheticModel()
