"""Charades CSV/classes parsing on small files in the real format (quoted commas, newlines, empty fields)."""

from __future__ import annotations

import pytest

from ski_lvlm.data.charades import (CharadesAction, CharadesFormatError, caption_benchmark, caption_eval_set,
                                    main_action, parse_actions, read_charades_classes, read_charades_csv,
                                    split_descriptions)

HEADER = "id,subject,scene,quality,relevance,verified,script,objects,descriptions,actions,length\n"
ROWS = (
    # quoted commas in script and descriptions, two descriptions separated by ';'
    '46GP8,HR43,Kitchen,6,7,Yes,"A person cooking on a stove, then looks out a window.",food;stove;window,'
    '"A person cooks food on a stove, then looks out of a window.;The person stirs a pot.",'
    'c092 11.90 21.20;c147 0.00 12.60,24.83\n'
    # embedded newline inside a quoted description, empty quality/relevance, lower-case continuation after ';'
    'N11GT,0KZ7,Stairs,,,Yes,"A person walks down the stairs.",stairs,'
    '"A person walks down\nthe stairs; then sits on a step.",c098 0.00 8.00,8.10\n'
    # empty actions and descriptions: the script becomes the reference
    '0IH69,6RE8,Bedroom,5,6,No,"A person is sleeping on a bed.",bed,,,30.00\n'
    # nothing at all to use as a reference, empty length
    'KRF68,YA10,Garage,4,5,Yes,,,,c001 1.00 2.00,\n'
)


def _write(tmp_path, text, name="Charades_v1_test.csv"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_parse_real_format_rows(tmp_path):
    videos, report = read_charades_csv(_write(tmp_path, HEADER + ROWS))
    assert [v.id for v in videos] == ["46GP8", "N11GT", "0IH69", "KRF68"]
    v = videos[0]
    assert v.script == "A person cooking on a stove, then looks out a window."
    assert v.objects == ["food", "stove", "window"]
    assert v.descriptions == ["A person cooks food on a stove, then looks out of a window.", "The person stirs a pot."]
    assert v.actions == [CharadesAction("c092", 11.9, 21.2), CharadesAction("c147", 0.0, 12.6)]
    assert v.quality == 6 and v.relevance == 7 and v.verified is True and v.length == pytest.approx(24.83)
    # the newline inside the quoted field is folded; the ';' continuation stays in one description
    assert videos[1].descriptions == ["A person walks down the stairs; then sits on a step."]
    assert videos[1].quality is None and videos[1].relevance is None
    assert videos[1].line == 3 and videos[2].line == 5  # row 2 spans two physical lines
    assert videos[2].actions == [] and videos[2].verified is False
    assert videos[3].length is None
    assert report.rows == 4 and report.skipped == []
    assert report.missing["quality"] == 1 and report.missing["actions"] == 1
    assert report.missing["descriptions"] == 2 and report.missing["script"] == 1 and report.missing["length"] == 1


def test_caption_eval_rule(tmp_path):
    videos, _ = read_charades_csv(_write(tmp_path, HEADER + ROWS))
    refs, counts = caption_eval_set(videos)
    assert refs["46GP8"] == videos[0].descriptions
    assert refs["0IH69"] == ["A person is sleeping on a bed."]  # script fallback
    assert "KRF68" not in refs
    assert counts == {"from_descriptions": 2, "from_script": 1, "no_reference": 1}
    refs2, counts2 = caption_eval_set(videos, fallback_to_script=False)
    assert "0IH69" not in refs2 and counts2["no_reference"] == 2
    bench = caption_benchmark(refs, "Describe.")
    assert bench[0] == {"video_name": "46GP8", "Q": "Describe.", "A": refs["46GP8"][0], "references": refs["46GP8"]}


def test_malformed_row_names_file_and_line(tmp_path):
    bad = HEADER + ROWS + 'BAD01,S,Hall,1,1,Yes,"x",,,c012 5.0,3.0\n'
    path = _write(tmp_path, bad)
    with pytest.raises(CharadesFormatError) as e:
        read_charades_csv(path)
    assert e.value.line == 7 and str(path) in str(e.value) and "c012 5.0" in str(e.value)
    videos, report = read_charades_csv(path, skip_bad=True)
    assert len(videos) == 4 and report.skipped[0][0] == 7 and report.to_dict()["skipped"][0]["line"] == 7


@pytest.mark.parametrize("row,needle", [
    ("X1,S,Hall,1,1,Yes,s,o,d,,abc\n", "length"),
    ("X1,S,Hall,1,1,Yes,s,o,d,\n", "fields"),
    ("X1,S,Hall,one,1,Yes,s,o,d,,1\n", "quality"),
    ("X1,S,Hall,1,1,Maybe,s,o,d,,1\n", "verified"),
    ("46GP8,S,Hall,1,1,Yes,s,o,d,,1\n", "duplicate"),
])
def test_bad_fields(tmp_path, row, needle):
    with pytest.raises(CharadesFormatError, match=needle):
        read_charades_csv(_write(tmp_path, HEADER + ROWS + row))


def test_header_and_quote_errors(tmp_path):
    with pytest.raises(CharadesFormatError, match="header lacks column"):
        read_charades_csv(_write(tmp_path, "id,subject\nX,Y\n"))
    with pytest.raises(CharadesFormatError, match=r":2: CSV error"):
        read_charades_csv(_write(tmp_path, HEADER + 'X1,S,Hall,1,1,Yes,"unterminated,o,d,,1\n'))


def test_actions_descriptions_and_classes(tmp_path):
    assert parse_actions("") == []
    assert parse_actions(" c000 0 1 ; ") == [CharadesAction("c000", 0.0, 1.0)]
    with pytest.raises(ValueError, match="end < start"):
        parse_actions("c001 5 1")
    assert split_descriptions("A b.;;C d.;e f. ") == ["A b.", "C d.; e f."]
    path = tmp_path / "Charades_v1_classes.txt"
    path.write_text("c000 Holding some clothes\nc001 Putting clothes somewhere\n\n", encoding="utf-8")
    assert read_charades_classes(path) == {"c000": "Holding some clothes", "c001": "Putting clothes somewhere"}
    path.write_text("c000 Holding some clothes\nbad line\n", encoding="utf-8")
    with pytest.raises(CharadesFormatError, match=r"classes.txt:2"):
        read_charades_classes(path)


def test_main_action_is_longest(tmp_path):
    videos, _ = read_charades_csv(_write(tmp_path, HEADER + ROWS))
    assert main_action(videos[0]).cls == "c147"  # 12.6 s beats 9.3 s
    assert main_action(videos[2]) is None
