"""Importers turn public or exported data into the data contract, as one landing batch each."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class ImportReport:
    dataset: str
    batch_id: str
    path: Path | None
    imported: dict[str, int] = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=dict)
    skipped: bool = False  # the batch had landed before: re-runs are no-ops
    # rejected rows per kind, kept outside the batch so none is lost
    rejected_paths: dict[str, Path] = field(default_factory=dict)
    dropped_columns: list[str] = field(default_factory=list)  # source columns not imported
    time_units: dict[str, str] = field(default_factory=dict)  # epoch column → "ms (detected)"
    notes: list[str] = field(default_factory=list)  # how the file was read, when it was guessed

    @property
    def rejected_path(self) -> Path | None:
        """The rejected rows' file of a one-table import."""
        return next(iter(self.rejected_paths.values()), None)

    def summary(self) -> str:
        if self.skipped:
            return f"{self.dataset}/{self.batch_id}: already imported, nothing to do" + "".join(
                f"; {x}" for x in self.notes)
        parts = ", ".join(
            f"{k} {self.imported.get(k, 0):,} imported / {self.rejected.get(k, 0):,} rejected"
            for k in self.imported
        )
        kept = "".join(f" (rejected {k} rows: {p})" for k, p in self.rejected_paths.items())
        return f"{self.dataset}/{self.batch_id}: {parts} → {self.path}{kept}" + "".join(
            f"; {x}" for x in self.remarks())

    def remarks(self) -> list[str]:
        """What the import guessed or left out, so nothing happens to the data unsaid."""
        out = [f"epoch unit of {c}: {u}" for c, u in self.time_units.items()]
        if self.dropped_columns:
            out.append(f"dropped columns not in the contract: {self.dropped_columns}")
        return out + self.notes
