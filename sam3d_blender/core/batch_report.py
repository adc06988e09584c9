"""The batch's report: what each item did, and whether a re-run redoes it (no bpy).

``report.json`` holds, per item id: status ("done", "partial" or "failed"), the error
code and sentence, timings, face counts and each object's reprojection IoU, plus the
item's fingerprint; and one line per run. It is written after every item (atomically), so
an interrupted run loses nothing.

Resuming: an item finished by an earlier run with the same fingerprint is skipped. A
failure is kept as it is (it is the input's) unless its code is retryable
(``core/messages.py: RETRYABLE_CODES``: the backend was away, time ran out, ...) or the
run asks for ``--retry-failed``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .messages import RETRYABLE_CODES
from .results import read_json, write_json

__all__ = ["REPORT_NAME", "Report", "progress_line", "summary_table"]

REPORT_NAME = "report.json"
REPORT_VERSION = 1


class Report:
    """``report.json`` in the output folder (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data = self._load()

    @property
    def items(self) -> dict[str, dict[str, Any]]:
        return self.data["items"]

    def _load(self) -> dict[str, Any]:
        if self.path.is_file():
            try:
                data = read_json(self.path)
            except (OSError, ValueError):
                data = {}
            if data.get("version") == REPORT_VERSION:
                data.setdefault("items", {})
                data.setdefault("runs", [])
                return data
        return {"tool": "sam3d_batch", "version": REPORT_VERSION, "runs": [], "items": {}}

    def save(self) -> None:
        write_json(self.path, self.data)

    def finished_before(self, ident: str, fingerprint: str, retry_failed: bool) -> dict | None:
        """The earlier record of item ``ident`` when this run may skip it, else None."""
        prev = self.items.get(ident)
        if not prev or prev.get("fingerprint") != fingerprint:
            return None
        status = prev.get("status")
        if status in ("done", "partial"):
            return prev
        if status == "failed":
            code = (prev.get("error") or {}).get("code", "")
            if retry_failed or code in RETRYABLE_CODES:
                return None
            return prev
        return None

    def close_run(self, run: dict[str, Any], records: list[dict], skipped: int, blend: Path):
        """Record this run and the summary of its items."""
        self.data["runs"].append(run)
        self.data["summary"] = {
            "items": len(records),
            "done": sum(1 for r in records if r["status"] == "done"),
            "partial": sum(1 for r in records if r["status"] == "partial"),
            "failed": sum(1 for r in records if r["status"] == "failed"),
            "skipped": skipped,
            "wall_s": run.get("wall_s"),
            "blend": str(blend),
        }
        self.save()


def progress_line(n: int, total: int, rec: dict[str, Any], skipped: bool, note: str = "") -> str:
    """One line per item: what happened, timings, faces, the worst reprojection IoU."""
    objs = rec.get("objects", [])
    ok = sum(1 for o in objs if o.get("state") == "done")
    head = f"[{n:>{len(str(total))}}/{total}] {rec['id']:<20.20}"
    if skipped:
        return f"{head} skipped  ({rec['status']} in an earlier run{note})"
    t = rec.get("timings", {})
    if rec["status"] == "failed":
        err = rec.get("error") or {}
        return f"{head} FAILED   [{err.get('code')}] {str(err.get('message', ''))[:90]}"
    faces = sum(int(o.get("faces") or 0) for o in objs)
    ious = [o["iou"] for o in objs if o.get("iou") is not None]
    iou = f"  IoU min {min(ious):.3f}" if ious else ""
    cached = " (cached)" if rec.get("cached") else ""
    n_assets = sum(1 for o in objs if o.get("asset"))
    assets = f"  {n_assets} assets" if n_assets else ""
    problems = len(rec.get("output_errors") or [])
    problems_text = f"  {problems} OUTPUT ERRORS" if problems else ""
    return (
        f"{head} {rec['status']:<8} {ok}/{len(objs)} objects  {t.get('total_s', 0):6.2f} s  "
        f"({t.get('per_object_s', 0):.2f} s/object)  {faces} faces{iou}{assets}{cached}"
        f"{problems_text}"
    )


def summary_table(
    records: list[dict[str, Any]], skipped: set[str], wall: float, backend_s: float | None = None
) -> str:
    """The end-of-run table: one row per item, then the totals of this run."""
    rows = [("item", "status", "objects", "faces", "job s", "import s", "total s", "s/obj", "code")]
    n_obj = 0
    for r in records:
        objs = r.get("objects", [])
        ok = sum(1 for o in objs if o.get("state") == "done")
        n_obj += ok if r["id"] not in skipped else 0
        t = r.get("timings", {})
        status = r["status"] + (" (skip)" if r["id"] in skipped else "")
        codes = sorted(
            {str((o.get("error") or {}).get("code")) for o in objs if o.get("error")}
            | ({str(r["error"]["code"])} if r.get("error") else set())
        )
        rows.append(
            (
                r["id"][:24],
                status,
                f"{ok}/{len(objs)}" if objs else "-",
                str(sum(int(o.get("faces") or 0) for o in objs)),
                f"{t.get('job_s', 0):.2f}",
                f"{t.get('import_s', 0):.2f}",
                f"{t.get('total_s', 0):.2f}",
                f"{t['per_object_s']:.2f}" if "per_object_s" in t else "-",
                ",".join(codes) or "-",
            )
        )
    widths = [max(len(row[c]) for row in rows) for c in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    by = {s: sum(1 for r in records if r["status"] == s) for s in ("done", "partial", "failed")}
    worked = len(records) - len(skipped)
    per_obj = f", {wall / n_obj:.2f} s per object overall" if n_obj else ""
    start = f" (backend start {backend_s:.1f} s)" if backend_s is not None else ""
    lines.append(
        f"{len(records)} items: {by['done']} done, {by['partial']} partial, {by['failed']} "
        f"failed; {len(skipped)} skipped (finished earlier), {worked} run now; "
        f"{n_obj} objects made in {wall:.1f} s{start}{per_obj}"
    )
    return "\n".join(lines)
