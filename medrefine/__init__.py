"""medrefine: a MONAI-based toolkit for 3D medical imaging.

Refine noisy multi-class labels with implicit neural decoders, learn segmentation from a few
clicked points, segment many structures at once, and evaluate and report the results.

Importing this package is cheap and has no side effects; the subpackages load their heavy
dependencies (torch, MONAI, ITK) when they are imported themselves.
"""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
