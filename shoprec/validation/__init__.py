"""The validation gate: Great Expectations suites run as SQL on DuckDB, per landing batch.

The names below are imported on first use: `python -m shoprec.validation.worker` imports this
package before the worker's own code, and a worker must set its lifeline before Great
Expectations' seconds of imports (killed meanwhile, its parent would leave it running)."""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {"Failure": "shoprec.validation.failures", "ValidatorError": "shoprec.validation.judge",
          "BatchResult": "shoprec.validation.runner", "validate": "shoprec.validation.runner"}

__all__ = ["BatchResult", "Failure", "ValidatorError", "validate"]


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
