"""The Data Docs index builder of the validation site (GX loads it by module and class name)."""

from __future__ import annotations

from great_expectations.render.renderer.site_builder import DefaultSiteIndexBuilder


class KeepingSiteIndexBuilder(DefaultSiteIndexBuilder):
    """GX's index builder, keeping the pages of results this context does not hold: every
    validation run (and every worker of one) has its own ephemeral context, and the default
    builder deleted the pages of all the others."""

    def build(self, skip_and_clean_missing: bool = True, build_index: bool = True):
        return super().build(skip_and_clean_missing=False, build_index=build_index)
