"""The README's Feast snippet is real: it runs as written against a materialized store."""

from __future__ import annotations

import re

from shoprec.config import reset_settings_cache
from shoprec.features.materialize import materialize
from shoprec.simulate import simulate
from shoprec.transform import transform
from shoprec.validation import validate
from tests.conftest import ROOT


def test_feast_snippet_runs(shoprec_home, settings, capsys):
    simulate("tiny", seed=2, days=25, settings=settings)
    validate(settings=settings, workers=1)
    transform(settings=settings)
    materialize(settings=settings)
    readme = (ROOT / "README.md").read_text()
    code = re.search(r"<!-- snippet:feast -->\n```python\n(.*?)```", readme, re.S).group(1)
    reset_settings_cache()
    exec(compile(code, "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "(2," in out  # two training rows came back
