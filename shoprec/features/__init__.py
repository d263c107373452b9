"""Feast feature store: dbt's feature tables offline and online, live pushes, training sets."""
