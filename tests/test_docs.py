"""The docs stay true: links resolve, the architecture page names every module, the state table is
the code's, and no comment points at notes outside the repository."""
import re
import subprocess
from pathlib import Path

import pytest

from geekai import states

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
# Notes that lived beside the project while it was written, never in it.
OUTSIDE_NOTES = re.compile(r"DESIGN\.md|WXPY_NOTES|ILINK_NOTES|STYLE\.md|/work/shared")
# A link to a heading: docs/protocol-notes.md#5-no-way-to-cancel-a-login, or (protocol-notes.md#...)
ANCHORED = re.compile(r"((?:docs/)?[\w.-]+\.md)#([\w-]+)")


def tracked_files():
    names = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return [ROOT / name for name in names.splitlines()
            if name.endswith((".py", ".md", ".html", ".js", ".css", ".txt", ".toml", ".ini", ".conf",
                              ".service", ".timer")) or name.endswith(("Makefile", "Dockerfile"))]


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    return {slug(line.lstrip("#")) for line in path.read_text(encoding="utf-8").splitlines()
            if re.match(r"#{1,6} ", line)}


def test_slug_matches_githubs_rule():
    assert slug("5. No way to cancel a login") == "5-no-way-to-cancel-a-login"
    assert slug("iLink: Tencent's bot API for personal accounts") == "ilink-tencents-bot-api-for-personal-accounts"
    assert slug("1. One-to-one messages are lost on Python 3.9 and later") == \
        "1-one-to-one-messages-are-lost-on-python-39-and-later"


def test_nothing_points_at_notes_outside_the_repository():
    cited = [f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
             for path in tracked_files() if path.name != "test_docs.py"
             for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1)
             if OUTSIDE_NOTES.search(line)]
    assert cited == []


def test_every_link_to_a_heading_finds_it():
    broken = []
    for path in tracked_files():
        if path.name == "test_docs.py":
            continue
        for target, anchor in ANCHORED.findall(path.read_text(encoding="utf-8", errors="replace")):
            if target.startswith("docs/"):
                doc = ROOT / target
            else:
                doc = path.parent / target
                doc = doc if doc.exists() else DOCS / target
            if not doc.is_file() or anchor not in anchors(doc):
                broken.append(f"{path.relative_to(ROOT)} -> {target}#{anchor}")
    assert broken == []


@pytest.mark.parametrize("page", ["README.md", "docs/architecture.md", "docs/protocol-notes.md"])
def test_relative_links_resolve(page):
    path = ROOT / page
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", path.read_text(encoding="utf-8")):
        if not target.startswith(("http://", "https://", "mailto:")):
            assert (path.parent / target).exists(), f"{page} links to {target}, which does not exist"
    assert "docs/architecture.md" in (ROOT / "README.md").read_text(encoding="utf-8")
    assert "docs/protocol-notes.md" in (ROOT / "README.md").read_text(encoding="utf-8")


def test_the_state_table_is_the_codes():
    text = (DOCS / "architecture.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `(\w+)` \| (.*) \|$", text, re.M)
    table = {state: set(re.findall(r"`(\w+)`", targets)) - {"BOT_ENABLED"} for state, targets in rows}
    assert table == {state: set(targets) for state, targets in states.ALLOWED.items()}


def test_the_architecture_page_names_every_module_and_only_real_ones():
    text = (DOCS / "architecture.md").read_text(encoding="utf-8")
    modules = [path for path in (ROOT / "geekai").rglob("*.py")
               if "versions" not in path.parts and path.name not in ("__init__.py", "env.py")]
    missing = [str(path.relative_to(ROOT)) for path in modules if f"`{path.name}`" not in text
               and str(path.relative_to(ROOT)) not in text]
    assert missing == [], f"docs/architecture.md does not say where these live: {missing}"
    named = set(re.findall(r"geekai/[\w/]+(?:\.py|/)", text)) | set(re.findall(r"`(\w+\.py)`", text))
    for name in named:
        if "/" in name:
            assert (ROOT / name).exists(), f"docs/architecture.md names {name}, which does not exist"
        else:
            assert (ROOT / name).is_file() or list((ROOT / "geekai").rglob(name)), \
                f"docs/architecture.md names {name}, which does not exist"
