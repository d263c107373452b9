"""Expectation suites in code, one per contract table, thresholds from settings.

A suite holds structure expectations (columns, types, at least one row) and content ones: the
contract's (required values, keys, domains, lengths) and the switchable rules about a shop's
habits (time and value ranges, references, duplicate and funnel rates) that a dataset's profile
may switch off. They run in one GX pass per table (a pass costs more than the SQL at batch
size); when the structure fails, errors raised by content expectations on missing or retyped
columns are consequences of the drift, not a broken validator.
"""

from __future__ import annotations

import datetime as dt

import great_expectations as gx
import great_expectations.expectations as gxe
import pyarrow as pa

from shoprec import contract
from shoprec.config import ValidationSettings

# duckdb-engine reflects VARCHAR→String, DOUBLE→FLOAT, INTEGER→Integer, BIGINT→BigInteger,
# TIMESTAMPTZ→TIMESTAMP; GX checks these SQLAlchemy class names. The exact DuckDB types are
# checked by a typeof() probe.
_SA_TYPE = {"string": "String", "double": "Float", "int32": "Integer",
            "int64": "BigInteger", "timestamp[us, tz=UTC]": "TIMESTAMP"}
_DUCK_TYPE = {"string": "VARCHAR", "double": "DOUBLE", "int32": "INTEGER", "int64": "BIGINT",
              "timestamp[us, tz=UTC]": "TIMESTAMP WITH TIME ZONE"}
_TIME_COLUMN = {"events": "event_timestamp", "items": "created_at", "users": "signup_at"}


# A query-based UnexpectedRowsExpectation has no column kwarg: one that checks a column names it
# in meta={"column": ...}, which the quarantine report shows.
STRUCTURE_RULES = {"expect_table_columns_to_match_set", "expect_table_row_count_to_be_between",
                   "expect_column_values_to_be_of_type"}
EXACT_TYPES = "exact column types of the data contract"


def duck_type(f: pa.Field) -> str:
    """The DuckDB type of a contract column."""
    return _DUCK_TYPE[str(f.type)]


def is_structure_rule(rule: str, description: str | None) -> bool:
    return rule in STRUCTURE_RULES or description == EXACT_TYPES


def table_suite(kind: str, v: ValidationSettings, now: dt.datetime,
                session_gap_minutes: int = 30) -> gx.ExpectationSuite:
    suite = gx.ExpectationSuite(name=f"{kind}_suite")
    add_structure(suite, kind)
    add_content(suite, kind, v, now, session_gap_minutes)
    return suite


def add_structure(suite: gx.ExpectationSuite, kind: str) -> None:
    schema = contract.SCHEMAS[kind]
    suite.add_expectation(gxe.ExpectTableColumnsToMatchSet(column_set=schema.names,
                                                           exact_match=True))
    suite.add_expectation(gxe.ExpectTableRowCountToBeBetween(min_value=1))
    for f in schema:
        suite.add_expectation(gxe.ExpectColumnValuesToBeOfType(column=f.name,
                                                               type_=_SA_TYPE[str(f.type)]))
    probes = " OR ".join(f"{f.name} <> '{_DUCK_TYPE[str(f.type)]}'" for f in schema)
    cols = ", ".join(f"typeof({f.name}) AS {f.name}" for f in schema)
    suite.add_expectation(gxe.UnexpectedRowsExpectation(
        description=EXACT_TYPES,
        unexpected_rows_query=f"SELECT * FROM (SELECT {cols} FROM {{batch}} LIMIT 1) AS t "
                              f"WHERE {probes}"))


def add_content(suite: gx.ExpectationSuite, kind: str, v: ValidationSettings,
                now: dt.datetime, session_gap_minutes: int = 30) -> None:
    """Contract content (required values, keys, domains, lengths), then the switchable rules
    about a shop's habits that `v.skip_rules` leaves on (meta["rule"] names each)."""
    schema = contract.SCHEMAS[kind]
    key = contract.KEYS[kind]
    for f in schema:
        if not f.nullable:
            suite.add_expectation(gxe.ExpectColumnValuesToNotBeNull(column=f.name))
    suite.add_expectation(gxe.ExpectColumnValuesToBeUnique(column=key))
    for f in schema:
        if f.name in contract.MAX_LENGTH:
            suite.add_expectation(_max_length(f.name, contract.MAX_LENGTH[f.name], key,
                                              v.sample_size))
    if kind == "events":
        suite.add_expectation(gxe.ExpectColumnValuesToBeInSet(
            column="event_type", value_set=list(contract.EVENT_TYPES)))
    rules = _habits(kind, v, now, session_gap_minutes)
    for rule, expectations in rules.items():
        if rule not in v.skip_rules:
            for e in expectations:
                e.meta = {**(e.meta or {}), "rule": rule}
                suite.add_expectation(e)


def _habits(kind: str, v: ValidationSettings, now: dt.datetime,
            gap: int) -> dict[str, list[gxe.Expectation]]:
    """Switchable rule → its expectations for a `kind` table."""
    latest = now + dt.timedelta(minutes=v.future_slack_minutes)
    # events and signups start at the configured start; catalogue rows may be older (a film
    # from 1965 is a fine item), but nothing is stamped in the future
    earliest = None if kind == "items" else v.min_timestamp
    rules: dict[str, list[gxe.Expectation]] = {"time_range": [gxe.ExpectColumnValuesToBeBetween(
        column=_TIME_COLUMN[kind], min_value=earliest, max_value=latest)]}
    if "price" in contract.SCHEMAS[kind].names:
        rules["price_range"] = [gxe.ExpectColumnValuesToBeBetween(
            column="price", min_value=0, max_value=v.price_ceiling)]
    if kind == "events":
        rules["quantity_range"] = [gxe.ExpectColumnValuesToBeBetween(
            column="quantity", min_value=1, max_value=v.max_quantity)]
        rules["unknown_items"] = [_unknown_reference("item", v.max_unknown_item_rate,
                                                     v.sample_size)]
        rules["unknown_users"] = [_unknown_reference("user", v.max_unknown_user_rate,
                                                     v.sample_size)]
        rules["duplicates"] = [_duplicates(v)]
        rules["funnel"] = [_funnel(v, gap)]
    return rules


def _duplicates(v: ValidationSettings) -> gxe.UnexpectedRowsExpectation:
    return gxe.UnexpectedRowsExpectation(
        meta={"column": "event_id"},
        description=f"column event_id: duplicate rate (same user_id, item_id, event_type, "
                    f"event_timestamp) at most {v.max_duplicate_rate:.2%}",
        unexpected_rows_query=f"""
            SELECT dups, n, dups / n AS rate, sample FROM (
                SELECT count(*) - count(DISTINCT (user_id, item_id, event_type,
                       event_timestamp)) AS dups, count(*) AS n,
                       (SELECT list(event_id)[1:{v.sample_size}] FROM (
                          SELECT event_id, count(*) OVER (PARTITION BY user_id, item_id,
                                 event_type, event_timestamp) AS c FROM {{batch}}) AS d
                        WHERE c > 1) AS sample
                FROM {{batch}}) AS t
            WHERE n > 0 AND dups / n > {v.max_duplicate_rate}""")


def sessions_sql(source: str, gap_minutes: int, by: str = "user_id") -> str:
    """`source`'s events with a session key (derived, s_key, s_n): a given session_id as is;
    where it is null, the user's derived session: a user's events in time order (ties as
    contract.TIE_ORDER has them within one batch), a new one at the first event or after a gap of
    more than `gap_minutes` (the rule dbt's session models use). `derived` keeps a derived key
    from matching a given id. `by`: the partition (a screen of many batches adds the batch)."""
    order = f"PARTITION BY {by} ORDER BY event_timestamp, event_seq NULLS LAST, md5(event_id)"
    return f"""
        SELECT *, session_id IS NULL AS derived, coalesce(session_id, user_id) AS s_key,
               CASE WHEN session_id IS NULL THEN sum(CASE WHEN prev IS NULL
                    OR event_timestamp - prev > INTERVAL {int(gap_minutes)} MINUTE THEN 1
                    ELSE 0 END) OVER ({order} ROWS UNBOUNDED PRECEDING) ELSE 0 END AS s_n
        FROM (SELECT *, lag(event_timestamp) OVER ({order}) AS prev FROM {source}) AS e"""


def _funnel(v: ValidationSettings, gap: int) -> gxe.UnexpectedRowsExpectation:
    return gxe.UnexpectedRowsExpectation(
        meta={"column": "event_type"},
        description=f"column event_type: purchases without a prior view of the item in the "
                    f"session at most {v.max_funnel_violation_rate:.2%}",
        unexpected_rows_query=f"""
            WITH s AS ({sessions_sql("{batch}", gap)})
            SELECT bad, n, bad / n AS rate, sample FROM (
                SELECT count(*) FILTER (WHERE v.item_id IS NULL) AS bad, count(*) AS n,
                       list(p.event_id ORDER BY p.event_timestamp, p.event_id)
                         FILTER (WHERE v.item_id IS NULL)[1:{v.sample_size}] AS sample
                FROM (SELECT * FROM s WHERE event_type = 'purchase') AS p
                LEFT JOIN (SELECT derived, s_key, s_n, item_id,
                                  min(event_timestamp) AS first_view
                           FROM s WHERE event_type = 'view' GROUP BY ALL) AS v
                  ON v.derived = p.derived AND v.s_key = p.s_key AND v.s_n = p.s_n
                     AND v.item_id = p.item_id AND v.first_view <= p.event_timestamp) AS t
            WHERE n > 0 AND bad / n > {v.max_funnel_violation_rate}""")


def _unknown_reference(ref: str, rate: float, sample: int) -> gxe.UnexpectedRowsExpectation:
    col = f"{ref}_id"
    return gxe.UnexpectedRowsExpectation(
        meta={"column": col},
        description=f"column {col}: ids missing from the known {ref}s at most {rate:.2%} "
                    f"(late-arriving rows tolerated; no {ref}s delivered yet: nothing to check)",
        # a dataset that never delivered that table has nothing to check against (dbt's
        # known_when_delivered test agrees): users and items are optional tables
        unexpected_rows_query=f"""
            SELECT unknown, n, unknown / n AS rate, sample FROM (
                SELECT count(*) FILTER (WHERE k.{col} IS NULL) AS unknown, count(*) AS n,
                       list(DISTINCT b.{col}) FILTER (WHERE k.{col} IS NULL)[1:{sample}] AS sample
                FROM {{batch}} AS b LEFT JOIN known_{ref}s AS k ON k.{col} = b.{col}
                WHERE b.{col} IS NOT NULL) AS t
            WHERE n > 0 AND unknown / n > {rate}
              AND EXISTS (SELECT 1 FROM known_{ref}s)""")


def _max_length(col: str, limit: int, key: str, sample: int) -> gxe.UnexpectedRowsExpectation:
    """No string over its contract length: a query, not ExpectColumnValueLengthsToBeBetween,
    whose failure would quote the whole (megabyte) value; this one names keys and lengths."""
    too_long = f"length({col}) > {limit}"
    return gxe.UnexpectedRowsExpectation(
        meta={"column": col},
        description=f"column {col}: at most {limit:,} characters (contract.MAX_LENGTH)",
        unexpected_rows_query=f"""
            SELECT bad, n, bad / n AS rate, sample FROM (
                SELECT count(*) FILTER (WHERE {too_long}) AS bad, count(*) AS n,
                       list(left({key}, 40) || ' (' || length({col}) || ' chars)')
                         FILTER (WHERE {too_long})[1:{sample}] AS sample
                FROM {{batch}}) AS t
            WHERE bad > 0""")
