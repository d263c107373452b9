"""The validation gate: Great Expectations suites run as SQL on DuckDB, per landing batch."""

from shoprec.validation.failures import Failure
from shoprec.validation.judge import ValidatorError
from shoprec.validation.runner import BatchResult, validate

__all__ = ["BatchResult", "Failure", "ValidatorError", "validate"]
