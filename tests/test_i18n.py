"""The two text catalogues (geekai/web/texts/zh.json, en.json) say the same things, and every text
a template or the page's script asks for is in them."""
from __future__ import annotations

import glob
import os
import re

from conftest import ROOT_DIR
from geekai.web import i18n


def test_both_languages_have_the_same_keys_and_no_empty_text():
    zh, en = i18n.CATALOGUES["zh"], i18n.CATALOGUES["en"]
    assert set(zh) == set(en)
    assert [key for key in zh if not zh[key].strip() or not en[key].strip()] == []
    # Placeholders the script or the templates fill in ({t}, {n}, {code}) exist in both forms.
    assert [key for key in zh if set(re.findall(r"\{\w+\}", zh[key])) != set(re.findall(r"\{\w+\}", en[key]))] == []


def test_chinese_texts_are_chinese():
    """All but the language switch, which names the other language in that language."""
    latin_only = [key for key, text in i18n.CATALOGUES["zh"].items() if not re.search(r"[\u4e00-\u9fff]", text)]
    assert latin_only == ["language"] and i18n.CATALOGUES["en"]["language"] == "中文"


def test_every_text_the_templates_and_the_script_use_exists():
    used = set()
    for path in glob.glob(os.path.join(ROOT_DIR, "templates", "*.html")):
        with open(path, encoding="utf-8") as handle:
            used |= set(re.findall(r"_\('(\w+)'\)", handle.read()))
    with open(os.path.join(ROOT_DIR, "static", "status.js"), encoding="utf-8") as handle:
        used |= set(re.findall(r"\bT\.(\w+)", handle.read()))
    assert sorted(used - set(i18n.CATALOGUES["zh"])) == []


def test_the_catalogue_is_read_only():
    import pytest

    with pytest.raises(TypeError):
        i18n.CATALOGUES["zh"]["title"] = "x"  # features do not write into it at start-up any more
