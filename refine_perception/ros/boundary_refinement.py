"""The boundary refinement stage as the segmentation nodes open and report it: a refiner that cannot be
opened leaves the masks unrefined and says why (log and /diagnostics) while the node keeps running; an
open one reports its last frame's milliseconds, per instance too, and patches."""

from __future__ import annotations

from typing import Any

from refine_perception.boundaries.stage import BoundaryStage
from refine_perception.models.model_file import ModelFileError
from refine_perception.runtime import BackendError, UnsupportedCombination


def open_refiner(node: Any, task: str) -> tuple[BoundaryStage | None, str]:
    """The refiner `node`'s parameters ask for (None without refine_boundaries) and why it is off, if it is."""
    try:
        refiner = BoundaryStage.of_params(node.params, task)
    except (ModelFileError, BackendError, UnsupportedCombination, OSError, ValueError) as error:
        reason = f"boundary refinement off: {error}"
        node.get_logger().error(reason)
        return None, reason
    if refiner is not None:
        node.get_logger().info(f"boundary refinement on {refiner.info}")
    return refiner, ""


def boundary_values(refiner: BoundaryStage | None, error: str) -> dict[str, str]:
    """The /diagnostics values of the stage."""
    if error:
        return {"boundary_refinement": error}
    return refiner.diagnostic_values() if refiner is not None else {}
