"""The validation gate: Great Expectations suites run as SQL on DuckDB, per landing batch."""

from shoprec.validation.runner import BatchResult, Failure, ValidatorError, validate

__all__ = ["BatchResult", "Failure", "ValidatorError", "validate"]
