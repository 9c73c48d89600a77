"""Settings dataclasses filled from a node's parameters or a params file, without ROS.

A node's parameters and a params file's mapping carry the same names, so one constructor serves the
nodes and the offline tools alike, and they cannot drift apart.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any, TypeVar

T = TypeVar("T", bound="FromParams")


class FromParams:
    """Mixin for a dataclass whose fields all have defaults: `from_params` reads them by name."""

    @classmethod
    def from_params(cls: type[T], params: Any) -> T:
        """The settings of `params`, an object or mapping with (at least) the field names, e.g. a node's
        parameters; a missing name keeps its default and each value is cast to its default's type."""
        get = params.get if isinstance(params, dict) else lambda name, default: getattr(params, name, default)
        return cls(**{f.name: type(f.default)(get(f.name, f.default)) for f in fields(cls)})
