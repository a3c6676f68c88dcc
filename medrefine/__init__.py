"""medrefine: a MONAI-based toolkit for 3D medical imaging.

Refine noisy multi-class labels with implicit neural decoders, learn segmentation from a few
clicked points, segment many structures at once, and evaluate and report the results.

Importing this package is cheap and has no side effects; the subpackages load their heavy
dependencies (torch, MONAI, ITK) when they are imported themselves.
"""

from __future__ import annotations

from medrefine._lazy import lazy_submodules

__all__ = ["__version__"]

__version__ = "0.1.0"

__getattr__, __dir__ = lazy_submodules(
    __name__,
    ("bundle", "cli", "data", "demo", "engines", "errors", "geodesic", "handlers", "inferers", "io", "losses", "metrics",
     "networks", "points", "reports", "transforms", "workflows"),
)
