"""Feast feature store: dbt's feature tables offline and online, live pushes, training sets."""

from shoprec.features.online import OnlineStoreUnavailable

__all__ = ["OnlineStoreUnavailable"]
