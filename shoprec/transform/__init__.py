"""dbt on DuckDB: build the warehouse, then publish a read-only snapshot for analysts."""

from shoprec.transform.runner import TransformReport, run_dbt, transform

__all__ = ["TransformReport", "run_dbt", "transform"]
