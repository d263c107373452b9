"""Per-dataset validation profiles: a shop's habits, not its contract.

A TOML file at `Settings.validation_profile(dataset)` overrides the gate's thresholds for that
dataset (top-level keys: `ValidationSettings` fields) and switches content rules on or off (a
`[rules]` table of rule = true/false). Only rules about how a shop behaves are switchable
(a log without views has no funnel); the contract rules are not, because dbt's models and tests
rely on them. No file: the settings as they are (defaults and SHOPREC_VALIDATION__* variables).
The profile wins over those variables, being the more specific of the two. `shoprec data
profile` shows the effective profile; `--init` writes a commented template, `--set` edits keys.

    max_duplicate_rate = 0.05
    [rules]
    funnel = false
"""

from __future__ import annotations

import datetime as dt
import json
import re
import textwrap
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from shoprec.config import Settings, SwitchableRule, ValidationSettings
from shoprec.names import UsageError

SWITCHABLE: tuple[str, ...] = typing.get_args(SwitchableRule)
RULES: dict[str, tuple[str, str]] = {
    "funnel": ("purchases without a prior view of the item in the session",
               "max_funnel_violation_rate"),
    "duplicates": ("events repeating user, item, type and timestamp under another id",
                   "max_duplicate_rate"),
    "unknown_items": ("events whose item_id no batch brought", "max_unknown_item_rate"),
    "unknown_users": ("events whose user_id no batch brought", "max_unknown_user_rate"),
    "price_range": ("prices between 0 and price_ceiling", "price_ceiling"),
    "quantity_range": ("quantities between 1 and max_quantity", "max_quantity"),
    "time_range": ("timestamps from min_timestamp (events, signups) to now + "
                   "future_slack_minutes", "min_timestamp"),
}
"""Switchable rule → (what it checks, the threshold that tunes it)."""
CONTRACT_RULES: tuple[str, ...] = ("columns", "row_count", "types", "required", "unique_key",
                                   "event_type", "max_length")
"""Rules every batch obeys whatever its profile: the contract dbt's models and tests rely on."""
LEADS: dict[str, str] = {
    "funnel": "a log without views?", "duplicates": "a log that repeats events?",
    "unknown_items": "the catalogue rows come later? `shoprec lake requeue` this batch once "
                     "they are validated; a catalogue that lacks them for good?",
    "unknown_users": "the customer rows come later? `shoprec lake requeue` this batch once "
                     "they are validated; a customer list that lacks them for good?",
    "price_range": "prices in another unit?", "quantity_range": "quantities in another unit?",
    "time_range": "an old history or a skewed clock?",
}
KEYS: tuple[str, ...] = tuple(k for k in ValidationSettings.model_fields if k != "skip_rules")


class ProfileError(UsageError):
    """A profile the gate cannot use: one line naming the file, the key and the valid choices."""


@dataclass(frozen=True)
class Profile:
    """The effective validation settings of a dataset, and where they came from."""

    path: Path
    found: bool  # False: no file, the default profile
    validation: ValidationSettings
    keys: frozenset[str] = field(default_factory=frozenset)  # what the file set, rules included

    @property
    def label(self) -> str:
        """What the ledger records as the profile that judged a batch."""
        return str(self.path) if self.found else "default"


def load_profile(settings: Settings, dataset: str | None = None) -> Profile:
    """The dataset's profile applied over `settings.validation`, or a ProfileError."""
    path = settings.validation_profile(dataset)
    if not path.is_file():
        return Profile(path, False, settings.validation)
    return _apply(path, _read(path), settings.validation)


def _apply(path: Path, data: dict, base: ValidationSettings) -> Profile:
    """A parsed profile over `base`; every error names `path` and the key."""
    rules = data.pop("rules", {})
    if not isinstance(rules, dict):
        raise ProfileError(f"{path}: 'rules' must be a table ([rules]) of rule = true/false; "
                           f"switchable rules: {list(SWITCHABLE)}")
    for key in data:
        _check_key(path, key)
    skip = set(base.skip_rules)
    for rule, on in rules.items():
        _check_rule(path, rule, on)
        (skip.discard if on else skip.add)(rule)
    values = {**base.model_dump(), **{k: _utc(v) for k, v in data.items()},
              "skip_rules": [r for r in SWITCHABLE if r in skip]}
    try:
        validation = ValidationSettings.model_validate(values, strict=True)
    except ValidationError as e:
        err = e.errors()[0]
        key = ".".join(str(x) for x in err["loc"])
        raise ProfileError(f"{path}: key '{key}': {err['msg']} (found "
                           f"{values.get(err['loc'][0])!r})") from None
    return Profile(path, True, validation, frozenset(data) | {f"rules.{r}" for r in rules})


def set_values(settings: Settings, dataset: str | None, assignments: list[str]) -> Path:
    """`shoprec data profile --set KEY=VALUE`: change keys of the dataset's profile (a commented
    template first when there is none), keeping every other line and comment. KEY is a
    threshold (max_duplicate_rate) or rules.<rule>; VALUE is TOML (0.05, false, 2020-01-01),
    else a string. The result is checked whole before it replaces the file."""
    from shoprec.atomic import atomic_path

    path = settings.validation_profile(dataset)
    text = path.read_text(encoding="utf-8") if path.is_file() else template(settings, dataset)
    lines = text.splitlines()
    for a in assignments:
        section, key, value = _assignment(path, a)
        lines = _set_line(lines, section, key, toml_value(value))
    text = "\n".join(lines) + "\n"
    try:
        _apply(path, tomllib.loads(text), settings.validation)
    except tomllib.TOMLDecodeError as e:
        raise ProfileError(f"{path}: the change would not be valid TOML ({e})") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def _assignment(path: Path, text: str) -> tuple[str | None, str, object]:
    """'rules.funnel=false' → ('rules', 'funnel', False); 'sample_size=3' → (None, ...)."""
    key, sep, raw = text.partition("=")
    key, raw = key.strip(), raw.strip()
    if not sep or not key:
        raise ProfileError(f"{path}: --set {text!r}: expected KEY=VALUE, e.g. "
                           "rules.funnel=false or max_duplicate_rate=0.05")
    try:
        value = _utc(tomllib.loads(f"v = {raw}")["v"])
    except tomllib.TOMLDecodeError:
        value = raw  # a bare word: held_reference_policy=warn
    section, dot, name = key.rpartition(".")
    if dot and section != "rules":
        raise ProfileError(f"{path}: --set {key}: unknown table '{section}'; keys are "
                           f"{list(KEYS)} or rules.<rule>")
    if section:
        _check_rule(path, name, value)
    else:
        _check_key(path, name)
    return section or None, name, value


_HEADER = re.compile(r"^\s*\[([^\]]+)\]\s*(#.*)?$")


def _set_line(lines: list[str], section: str | None, key: str, value: str) -> list[str]:
    """Set `key` in `section` (None: the top): its line, else its commented template line, else a
    new line at the end of the section (the section made if missing)."""
    heads = [i for i, line in enumerate(lines) if _HEADER.match(line)]
    if section is None:
        start, end = 0, heads[0] if heads else len(lines)
    else:
        mine = [i for i in heads if _HEADER.match(lines[i]).group(1).strip() == section]
        if not mine:
            return [*lines, "", f"[{section}]", f"{key} = {value}"]
        start = mine[0] + 1
        end = next((i for i in heads if i > mine[0]), len(lines))
    for pattern in (rf"^\s*{re.escape(key)}\s*=", rf"^\s*#\s*{re.escape(key)}\s*="):
        for i in range(start, end):
            if re.match(pattern, lines[i]):
                return [*lines[:i], f"{key} = {value}", *lines[i + 1:]]
    while end > start and not lines[end - 1].strip():  # before the blank lines ending it
        end -= 1
    return [*lines[:end], f"{key} = {value}", *lines[end:]]


def effective_settings(settings: Settings, dataset: str | None = None,
                       ) -> tuple[Settings, Profile]:
    """`settings` with the dataset's profile applied: what the gate, and its worker processes
    (which receive these settings as JSON), judge that dataset's batches with."""
    profile = load_profile(settings, dataset)
    return settings.model_copy(update={"validation": profile.validation}), profile


def add_hints(failures: list, profile: Profile) -> None:
    """A failed switchable rule says how to switch it off for this dataset, if that is the fix."""
    for f in failures:
        rule = getattr(f, "switch", None)
        if rule in RULES and "[rules]" not in f.detail:
            tune = RULES[rule][1]
            f.detail += (f"; {LEADS[rule]} `shoprec data profile --set rules.{rule}=false` "
                         f"(or --set {tune}=...), then `shoprec lake requeue` the batch")


def _read(path: Path) -> dict:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ProfileError(f"{path}: not valid TOML ({e})") from None
    except OSError as e:
        raise ProfileError(f"{path}: cannot read the profile ({e.strerror or e})") from None


def _check_key(path: Path, key: str) -> None:
    if key == "skip_rules":
        raise ProfileError(f"{path}: key 'skip_rules': switch rules in the [rules] table "
                           f"instead (e.g. funnel = false)")
    if key not in KEYS:
        raise ProfileError(f"{path}: unknown key '{key}'; valid keys: {list(KEYS)} and the "
                           f"[rules] table")


def _check_rule(path: Path, rule: str, on: object) -> None:
    where = f"{path}: [rules] {rule}"
    if rule in CONTRACT_RULES:
        if on is True:
            return
        raise ProfileError(f"{where}: a contract rule, not switchable (dbt's models and tests "
                           f"rely on it); switchable rules: {list(SWITCHABLE)}")
    if rule not in SWITCHABLE:
        raise ProfileError(f"{where}: unknown rule; switchable rules: {list(SWITCHABLE)}")
    if not isinstance(on, bool):
        raise ProfileError(f"{where}: expected true or false, found {on!r}")


def _utc(value: object) -> object:
    """TOML dates and local date-times are read as UTC, as every timestamp of the contract."""
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)
    return value


def toml_value(value: object) -> str:
    """A value as TOML writes it (the settings hold only these types)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)


def template(settings: Settings, dataset: str | None = None) -> str:
    """A commented profile that changes nothing until a line is uncommented: every key with
    what it means and its current default."""
    v = settings.validation
    ds = dataset or settings.dataset
    lines = _comment(f"Validation profile of dataset '{ds}': how `shoprec validate` judges its "
                     "batches. A key left out (or commented out) keeps its default, shown here; "
                     "uncomment a line to change it for this dataset. Contract rules ("
                     + ", ".join(CONTRACT_RULES) + ") always apply.") + [""]
    for key in KEYS:
        info = ValidationSettings.model_fields[key].description or key
        lines += _comment(info) + [f"# {key} = {toml_value(getattr(v, key))}", ""]
    lines += ["[rules]", "# true: the rule applies; false: switched off for this dataset.", ""]
    for rule in SWITCHABLE:
        what, tune = RULES[rule]
        lines += _comment(f"{what} (tuned by {tune})")
        lines += [f"# {rule} = {toml_value(rule not in v.skip_rules)}", ""]
    return "\n".join(lines)


def _comment(text: str) -> list[str]:
    return textwrap.wrap(text, 98, initial_indent="# ", subsequent_indent="# ")


def write_template(settings: Settings, dataset: str | None = None) -> Path:
    """Write `template` to the dataset's profile path; an existing profile is never replaced."""
    from shoprec.atomic import atomic_path

    path = settings.validation_profile(dataset)
    try:
        if path.exists():
            raise FileExistsError(path)
        with atomic_path(path, replace=False) as tmp:  # the link fails if one appeared since
            tmp.write_text(template(settings, dataset), encoding="utf-8")
    except FileExistsError:
        raise ProfileError(f"{path}: a profile exists already; edit it, or move it away "
                           "first") from None
    return path
