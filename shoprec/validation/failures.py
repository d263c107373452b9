"""GX results → `Failure`s a person can act on: which table, rule and column, and what was found."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Failure:
    table: str
    rule: str
    column: str | None
    detail: str
    structural: bool = False
    switch: str | None = None  # the profile rule that decides it (funnel, ...); None: contract

    def line(self) -> str:
        col = f" column '{self.column}'" if self.column else ""
        where = "batch" if self.table == "batch" else f"{self.table}.parquet"  # the whole batch
        return f"{where}{col}: {self.rule}: {self.detail}"


def result_failures(table: str, result, fetch: Callable[[str], list],
                    ) -> tuple[list[Failure], list[str]]:
    """Rule failures, and errors raised by expectations. Errors count as a broken validator only
    when the structure held (a missing column makes its expectations raise, by design)."""
    from shoprec.validation.suites import is_structure_rule

    fails, broken = [], []
    for r in result.results:
        cfg = r.expectation_config
        errs = exception_messages(r)
        if errs:
            broken.append(f"{table}: {cfg.type}({cfg.kwargs.get('column', '')}): {errs[0]}")
            continue
        if r.success:
            continue
        res = r.result or {}
        column = cfg.kwargs.get("column")
        if cfg.type == "unexpected_rows_expectation":
            column = cfg.meta.get("column")  # a query has no column kwarg; suites.py names it
            desc = cfg.description or ""
            detail = desc + f"; {res.get('observed_value')} offending rows"
            try:  # SUMMARY results carry no rows: ask once, on failure only
                rows = fetch(cfg.kwargs["unexpected_rows_query"])
                detail = desc + f"; found {_describe_row(rows[0])}" if rows else detail
            except Exception:  # the verdict stands without the extra detail
                pass
        elif cfg.type == "expect_table_columns_to_match_set":
            obs = set(res.get("observed_value") or [])
            want = set(cfg.kwargs.get("column_set") or [])
            missing, extra = sorted(want - obs), sorted(obs - want)
            column = (missing or extra or [None])[0]
            detail = f"columns differ from the contract: missing {missing}, unexpected {extra}"
        elif cfg.type == "expect_table_row_count_to_be_between":
            detail = f"row count {res.get('observed_value')}, need at least " \
                     f"{cfg.kwargs.get('min_value')}"
        elif cfg.type == "expect_column_values_to_be_of_type":
            detail = f"type {res.get('observed_value')}, contract wants {cfg.kwargs.get('type_')}"
        else:
            n, pct = res.get("unexpected_count"), res.get("unexpected_percent")
            sample = res.get("partial_unexpected_list") or []
            detail = f"{n} unexpected ({pct:.3g}%)" if pct is not None else f"{n} unexpected"
            bounds = {k: cfg.kwargs[k] for k in ("min_value", "max_value", "value_set")
                      if cfg.kwargs.get(k) is not None}
            if bounds:
                detail += f", expected {bounds}"
            detail += f", e.g. {sample[:5]}"
        fails.append(Failure(table, cfg.type, column, detail,
                             structural=is_structure_rule(cfg.type, cfg.description),
                             switch=(cfg.meta or {}).get("rule")))
    if any(f.structural for f in fails):
        broken = []
    return fails, broken


def exception_messages(r) -> list[str]:
    """What raised inside GX for one expectation result (its exception_info is either a single
    record or a dict of them): an error of the check, not a verdict on the data."""
    info = r.exception_info or {}
    if "raised_exception" in info:
        info = {"_": info}
    return [v.get("exception_message") or "unknown error" for v in info.values()
            if isinstance(v, dict) and v.get("raised_exception")]


def _describe_row(row) -> str:
    # the rate queries in suites.py answer (count, n, rate, sample)
    m = dict(row._mapping)
    if {"n", "rate"} <= m.keys():
        first = next(iter(m))
        return (f"{m[first]:,} of {m['n']:,} rows ({m['rate']:.2%}), e.g. "
                f"{list(m.get('sample') or [])[:5]}")
    return str(m)
