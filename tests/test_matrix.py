"""The README's coverage matrix is the one the suite's fixtures and manifests give."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.conformance.matrix import BEGIN, END, markdown, replace_section

pytestmark = pytest.mark.fast

README = Path(__file__).resolve().parent.parent / "README.md"


def test_the_readme_matrix_is_current() -> None:
    text = README.read_text(encoding="utf-8")
    current = text[text.index(BEGIN):text.index(END) + len(END)]
    assert current == markdown(), ("the README's coverage matrix is stale: run "
                                   "python -m engine.conformance.matrix --write README.md")


def test_every_manifest_has_a_row_and_every_cell_a_known_value() -> None:
    scenarios = markdown().split("Beyond text")[0]
    rows = [line for line in scenarios.splitlines() if line.startswith("| `")]
    ids = sorted(p.stem for p in (README.parent / "protocols").glob("*.yaml"))
    assert [row.split("`")[1] for row in rows] == ids
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")][2:12]
        assert set(cells) <= {"rec", "doc", "con", "refused", "n/a"}, row


def test_replace_section_keeps_the_rest_and_refuses_a_file_without_markers() -> None:
    text = f"intro\n{BEGIN}\nold\n{END}\noutro\n"
    assert replace_section(text, f"{BEGIN}\nnew\n{END}") == f"intro\n{BEGIN}\nnew\n{END}\noutro\n"
    with pytest.raises(ValueError, match="no coverage matrix section"):
        replace_section("no markers", "x")


def test_the_feature_table_has_a_row_per_chat_manifest_and_known_cells() -> None:
    features = markdown().split("Beyond text")[1]
    rows = [line for line in features.splitlines() if line.startswith("| `")]
    assert "`anthropic`" in features and "`voyage`" not in features  # embed-only: no row
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")][1:]
        assert len(cells) == 9, row
        assert set(cells) <= {"rec", "doc", "con", "emu rec", "emu doc", "emu con", "refused",
                              "auto", "n/a", "missing"}, row
