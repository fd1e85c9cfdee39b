"""KD Studio engine: knowledge distillation of transformer text classifiers.

Importing the package is cheap; heavy modules (torch, transformers, datasets) load on first use.
"""
from __future__ import annotations

__version__ = "0.1.0"
