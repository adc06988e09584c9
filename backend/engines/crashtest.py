"""A test-only engine that misbehaves on purpose (enabled by SAM3D_ENABLE_TEST_ENGINES=1).

The seed selects the behaviour, so tests can drive crashes through the real API:

* seed 1 - the process dies hard mid-job (``os.abort``, like a native segfault);
* seed 2 - hangs in native-like code that never checks for cancel (10 minutes);
* seed 3 - slow but cooperative: 60 steps of 0.1 s, checking cancel between steps;
* any other seed - behaves like the preview engine after a 0.5 s pause.
"""

from __future__ import annotations

import os
import time

import numpy as np

from backend.engines.base import Availability
from backend.engines.preview import PreviewEngine
from backend.job_context import JobContext
from backend.options import JobOptions
from backend.reconstruction import Intrinsics, Reconstruction


class CrashTestEngine(PreviewEngine):
    name = "crashtest"

    def availability(self) -> Availability:
        return Availability(True, "test-only engine that crashes on purpose")

    def reconstruct(
        self,
        image: np.ndarray,
        mask: np.ndarray,
        seed: int,
        options: JobOptions,
        ctx: JobContext,
        intrinsics: Intrinsics | None = None,
    ) -> Reconstruction:
        ctx.stage("reconstruct")
        self._misbehave(seed, ctx)
        rec = super()._reconstruct_one(image, mask, intrinsics or self.intrinsics_for(image), ctx)
        rec.meta["engine"] = self.name
        return rec

    def reconstruct_many(self, image, masks, seed, options, ctx):
        self._misbehave(seed, ctx)
        return super().reconstruct_many(image, masks, seed, options, ctx)

    @staticmethod
    def _misbehave(seed: int, ctx: JobContext) -> None:
        if seed == 1:
            time.sleep(0.3)
            os.abort()
        elif seed == 2:
            time.sleep(600)
        elif seed == 3:
            for i in range(60):
                time.sleep(0.1)
                ctx.progress(i / 60)
        else:
            time.sleep(0.5)
