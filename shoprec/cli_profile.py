"""`shoprec data profile`: the validation profile a dataset's batches are judged by."""

from __future__ import annotations

import typer
from rich.console import Console

from shoprec.config import get_settings

console = Console(stderr=True, soft_wrap=True)


def profile_cmd(
    dataset: str = typer.Option(None, help="Dataset (default: shop)."),
    init: bool = typer.Option(False, "--init", help="Write a commented template of the default "
                              "profile to the dataset's profile path (never overwrites)."),
    assign: list[str] = typer.Option([], "--set", help="KEY=VALUE to change in the profile, "
                                     "repeatable: rules.funnel=false, max_duplicate_rate=0.05."),
) -> None:
    """Show the effective validation profile (thresholds, rules on/off, which file); --init
    writes a template to edit, --set changes keys in it. Rules about a shop's habits (a log
    without views: funnel) can be switched off per dataset; the contract's cannot."""
    from shoprec.validation.profile import load_profile, set_values, write_template

    s = get_settings()
    if init:
        path = write_template(s, dataset)
        console.print(f"[green]profile[/] template written to {path}; uncomment what differs "
                      f"for this shop, then `shoprec data profile` shows the effect")
    if assign:
        path = set_values(s, dataset, assign)
        console.print(f"[green]profile[/] set {', '.join(assign)} in {path}")
    if not (init or assign):
        typer.echo(render(load_profile(s, dataset), dataset or s.dataset))


def render(profile, dataset: str) -> str:
    """The effective profile as TOML, with where each value came from."""
    from shoprec.validation.profile import CONTRACT_RULES, KEYS, RULES, SWITCHABLE, toml_value

    v = profile.validation
    source = (f"from {profile.path}" if profile.found else
              f"default (no {profile.path}; `shoprec data profile --init` writes one)")
    lines = [f"# validation profile of dataset '{dataset}': {source}"]
    for key in KEYS:
        mark = "  # profile" if key in profile.keys else ""
        lines.append(f"{key} = {toml_value(getattr(v, key))}{mark}")
    lines += ["", "[rules]"]
    for rule in SWITCHABLE:
        mark = ", profile" if f"rules.{rule}" in profile.keys else ""
        on = rule not in v.skip_rules
        lines.append(f"{rule} = {toml_value(on)}  # {'on' if on else 'off'}{mark}: "
                     f"{RULES[rule][0]}")
    lines.append(f"# contract rules, always on: {', '.join(CONTRACT_RULES)}")
    return "\n".join(lines)
