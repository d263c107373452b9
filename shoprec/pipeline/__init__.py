"""Task bodies of the Airflow DAGs: plain functions the DAGs, the CLI and the tests share."""
