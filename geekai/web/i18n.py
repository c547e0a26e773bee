"""Simplified Chinese and English for the pages: chosen by ?lang=, a cookie, or Accept-Language."""
from __future__ import annotations

import json
import os
from types import MappingProxyType
from urllib.parse import urlencode

from flask import g, request

LANGUAGES = ("zh", "en")

TEXTS_FOLDER = os.path.join(os.path.dirname(__file__), "texts")


def _load(lang: str) -> dict[str, str]:
    with open(os.path.join(TEXTS_FOLDER, f"{lang}.json"), encoding="utf-8") as handle:
        return json.load(handle)


# One catalogue per language, as data (geekai/web/texts/zh.json, en.json): every text a page shows,
# the features' included. Read-only; tests/test_i18n.py checks both have the same keys.
CATALOGUES = MappingProxyType({lang: MappingProxyType(_load(lang)) for lang in LANGUAGES})
# key -> {"zh": ..., "en": ...}, for code that wants both forms of one text.
TEXT = MappingProxyType({key: MappingProxyType({lang: CATALOGUES[lang][key] for lang in LANGUAGES})
                         for key in CATALOGUES["zh"]})


def choose_language() -> str:
    """?lang= wins, then the lang cookie, then the browser's Accept-Language."""
    asked = request.args.get("lang") or request.cookies.get("lang")
    if asked in LANGUAGES:
        return asked
    return request.accept_languages.best_match(["zh-CN", "zh", "en"], default="zh")[:2]


def translate(key: str) -> str:
    return CATALOGUES[g.get("lang", "zh")].get(key, key)


def same_page(**changed) -> str:
    """This page's URL with some query arguments changed (the language switch keeps the filters)."""
    args = request.args.to_dict() | changed
    return request.path + "?" + urlencode(args)


def page_texts() -> dict:
    """Every text in the page's language, for the script that renders live updates."""
    return dict(CATALOGUES[g.get("lang", "zh")])


def init_app(app) -> None:
    """Make `_`, `lang` and the page's texts available to templates."""

    @app.context_processor
    def inject():
        g.lang = g.get("lang") or choose_language()
        return {"_": translate, "lang": g.lang, "other_lang": "en" if g.lang == "zh" else "zh",
                "page_texts": page_texts, "same_page": same_page}

    @app.after_request
    def remember(response):
        asked = request.args.get("lang") if b"lang=" in request.query_string else None
        if asked in LANGUAGES:
            response.set_cookie("lang", asked, max_age=365 * 86400, samesite="Lax")
        # The same URL answers in two languages.
        if "Vary" in response.headers:
            response.vary.update(("Accept-Language", "Cookie"))
        else:  # most answers: one header set, without parsing and rewriting it twice
            response.headers["Vary"] = "Accept-Language, Cookie"
        return response
