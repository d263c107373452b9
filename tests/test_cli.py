"""The CLI is the front door: its help lists every stage, and commands run end to end."""

from __future__ import annotations

import re

from typer.testing import CliRunner

from shoprec.cli import app

runner = CliRunner()


def _commands(args: list[str]) -> set[str]:
    result = runner.invoke(app, [*args, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    return set(re.findall(r"^│ (\w[\w-]*)\s", result.output, re.M))


def test_help_lists_every_subcommand():
    assert {"data", "validate", "transform", "features", "train", "evaluate", "demo",
            "info", "serve"} <= _commands([])
    assert {"apply", "materialize", "get", "push"} <= _commands(["features"])
    assert {"simulate", "import"} <= _commands(["data"])
    assert {"movielens", "file"} <= _commands(["data", "import"])


def test_simulate_command_writes_batches_and_summary(shoprec_home):
    result = runner.invoke(app, ["data", "simulate", "--scale", "tiny", "--days", "3"])
    assert result.exit_code == 0, result.output
    batches = sorted(p.name for p in (shoprec_home / "lake/shop/landing").iterdir())
    assert batches == ["2026-01-05", "2026-01-06", "2026-01-07"]
    assert "3 day batches" in result.output


def test_unknown_scale_is_a_clear_error(shoprec_home):
    result = runner.invoke(app, ["data", "simulate", "--scale", "huge"])
    assert result.exit_code != 0
    assert "unknown scale 'huge'" in str(result.exception)


def test_training_before_the_warehouse_exists_names_the_missing_step(shoprec_home):
    result = runner.invoke(app, ["train", "--dataset", "acme"])
    assert result.exit_code != 0
    assert "no published warehouse for dataset 'acme'" in str(result.exception)
    assert "shoprec transform --dataset acme" in str(result.exception)
    result = runner.invoke(app, ["evaluate", "--dataset", "acme"])
    assert "no exported run for 'acme'" in str(result.exception)
