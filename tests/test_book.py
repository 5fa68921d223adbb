"""The book builds with no warnings and its landing page carries what a reader needs first."""
import re

import yaml

from conftest import ROOT


def test_landing_page_builds_with_notation_table_and_references(built_site):
    page = (built_site / "intro.html").read_text()
    assert "<title>Backpropagation Through Time" in page
    for source_symbol in ("s_t", "U", "V", "E_t", r"\mathbf{h}_{(t)}"):           # the notation table
        assert source_symbol in page
    assert re.search(r"Werbos.*1990", page, re.S) and "Pascanu" in page           # bibliography rendered


def test_config_points_binder_at_main_and_executes_fresh():
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert config["repository"]["branch"] == "main"
    assert config["launch_buttons"]["binderhub_url"].startswith("https://mybinder.org")
    assert config["execute"]["execute_notebooks"] == "force"
