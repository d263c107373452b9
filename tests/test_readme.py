"""The README's Feast snippet is real: it runs as written against a materialized store."""

from __future__ import annotations

import re

from shoprec.config import reset_settings_cache
from tests.conftest import ROOT


def test_feast_snippet_runs(built_shop, monkeypatch, capsys):
    monkeypatch.setenv("SHOPREC_HOME", str(built_shop.home))
    readme = (ROOT / "README.md").read_text()
    code = re.search(r"<!-- snippet:feast -->\n```python\n(.*?)```", readme, re.S).group(1)
    reset_settings_cache()
    try:
        exec(compile(code, "README.md", "exec"), {})
    finally:
        reset_settings_cache()
    out = capsys.readouterr().out
    assert "(2," in out  # two training rows came back
