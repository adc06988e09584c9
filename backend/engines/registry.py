"""Which engines exist, which can run here, and what ``auto`` means.

Availability checks are cheap and import no heavy package (the HTTP server calls them).
"""

from __future__ import annotations

from backend.config import test_engines_enabled
from backend.engines.base import Availability, Engine
from backend.errors import BackendError

PUBLIC_ENGINES = ("preview", "sam3d")


def engine_names() -> tuple[str, ...]:
    return PUBLIC_ENGINES + (("crashtest",) if test_engines_enabled() else ())


def create_engine(name: str) -> Engine:
    """Instantiate an engine by name (weights load lazily, on first use)."""
    if name == "preview":
        from backend.engines.preview import PreviewEngine

        return PreviewEngine()
    if name == "sam3d":
        from backend.engines.sam3d import Sam3DEngine

        return Sam3DEngine()
    if name == "crashtest" and test_engines_enabled():
        from backend.engines.crashtest import CrashTestEngine

        return CrashTestEngine()
    raise BackendError(
        "unknown_engine",
        f"There is no engine called {name!r}; choose one of: auto, {', '.join(engine_names())}.",
    )


def availability(name: str) -> Availability:
    try:
        return create_engine(name).availability()
    except BackendError:
        raise
    except Exception as exc:  # an engine module that cannot even be imported
        return Availability(False, f"the {name} engine failed to load: {exc}")


def engine_report() -> dict[str, Availability]:
    return {name: availability(name) for name in engine_names()}


def resolve_engine(requested: str, report: dict[str, Availability] | None = None) -> str:
    """``auto`` -> ``sam3d`` when it can run, else ``preview``. Unknown or unavailable -> error."""
    report = report if report is not None else engine_report()
    if requested == "auto":
        sam = report.get("sam3d")
        return "sam3d" if sam is not None and sam.available else "preview"
    if requested not in report:
        raise BackendError(
            "unknown_engine",
            f"There is no engine called {requested!r}; choose one of: auto, {', '.join(report)}.",
        )
    if not report[requested].available:
        raise BackendError(
            "engine_unavailable",
            f"The {requested} engine cannot run on this backend: {report[requested].reason}",
        )
    return requested
