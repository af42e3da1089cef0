"""`/count`: the schema, reading the model's JSON, the table in English and Chinese, the CSV."""

from __future__ import annotations

import csv
import io
import json

import jsonschema
import pytest

from handlers.chat.count_table import as_written, build_table, to_csv, to_markdown
from handlers.chat.counting import RESPONSE_FORMAT, SCHEMA, Count, CountStream, Row, parse_count

TWO_IMAGES = {
    "objects": [
        {"name": "apple", "count": 3, "image": 1},
        {"name": "apple", "count": 2, "image": 2},
        {"name": "pear", "count": 1, "image": 2, "note": "half hidden"},
    ],
    "total": 6,
    "uncertain": ["one apple may be a tomato"],
}


def test_the_response_format_is_a_json_schema_that_checks_what_the_table_needs():
    assert RESPONSE_FORMAT["type"] == "json_schema"  # never vLLM's old guided_json
    assert RESPONSE_FORMAT["json_schema"]["schema"] is SCHEMA
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    jsonschema.validate(TWO_IMAGES, SCHEMA)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(
            {"objects": [{"name": "apple", "count": -1}], "total": 0, "uncertain": []}, SCHEMA
        )


def test_a_count_is_parsed_into_rows():
    count = parse_count(json.dumps(TWO_IMAGES))
    assert count.objects[2] == Row("pear", 1, 2, "half hidden")
    assert count.total == 6 and count.uncertain == ("one apple may be a tomato",)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "I see three apples.",
        '{"objects": [{"name": "apple", "count": 3}], "total": 3, "unc',  # cut at the length limit
        '{"objects": "three apples", "total": 3, "uncertain": []}',
        '{"objects": [{"name": "apple", "count": 2.5}], "total": 2, "uncertain": []}',
        '{"objects": [{"name": "apple", "count": true}], "total": 1, "uncertain": []}',
        '{"objects": [{"name": "", "count": 1}], "total": 1, "uncertain": []}',
        '{"objects": [{"name": "apple", "count": 1, "image": 0}], "total": 1, "uncertain": []}',
        "[1, 2, 3]",
    ],
)
def test_what_is_not_a_count_is_not_taken_for_one(text):
    assert parse_count(text) is None


def test_one_image_gives_an_object_and_count_table_with_a_total_row():
    count = Count((Row("cat", 2), Row("dog", 1, note="asleep")), total=3)
    text = to_markdown(build_table(count, ["pets.jpg"], "en-US"), "en-US")
    assert text.splitlines() == [
        "| Object | Count | Note |",
        "| --- | ---: | --- |",
        "| cat | 2 | – |",
        "| dog | 1 | asleep |",
        "| **Total** | **3** | – |",
    ]


def test_several_images_give_one_column_each_labelled_with_their_names():
    count = parse_count(json.dumps(TWO_IMAGES))
    text = to_markdown(build_table(count, ["left.jpg", "right.jpg"], "en-US"), "en-US")
    lines = text.splitlines()
    assert lines[0] == "| Object | left.jpg | right.jpg | Total | Note |"
    assert lines[2] == "| apple | 3 | 2 | 5 | – |"
    assert lines[3] == "| pear | 0 | 1 | 1 | half hidden |"
    assert lines[4] == "| **Total** | **3** | **3** | **6** | – |"
    assert lines[-3:] == ["**Uncertain**", "", "- one apple may be a tomato"]


def test_the_table_speaks_chinese():
    count = parse_count(json.dumps(TWO_IMAGES))
    text = to_markdown(build_table(count, ["左.jpg", "右.jpg"], "zh-CN"), "zh-CN")
    assert text.startswith("| 物体 | 左.jpg | 右.jpg | 合计 | 说明 |")
    assert "| **合计** | **3** | **3** | **6** |" in text
    assert "**不确定之处**" in text


def test_totals_are_added_up_and_a_wrong_model_total_is_said():
    count = Count((Row("cat", 2), Row("cat", 1)), total=5)
    table = build_table(count, ["a.jpg"], "en-US")
    assert table.rows == (("cat", 3),) and table.total == ("Total", 3)
    assert any("5" in item and "3" in item for item in table.uncertain)


def test_a_row_tied_to_no_image_has_only_a_total():
    count = Count((Row("tree", 4), Row("car", 1, 2)), total=5)
    table = build_table(count, ["a.jpg", "b.jpg"], "en-US")
    assert table.rows == (("tree", None, None, 4), ("car", 0, 1, 1))
    assert table.total == ("Total", 0, 1, 5)


def test_repeated_image_names_get_distinct_columns():
    table = build_table(Count((), 0), ["IMG.jpg", "IMG.jpg"], "en-US")
    assert table.header[1:3] == ("IMG.jpg", "IMG.jpg (2)")


def test_names_cannot_break_the_markdown_table():
    count = Count((Row("a | b\nc", 1),), total=1)
    line = to_markdown(build_table(count, ["x.jpg"], "en-US"), "en-US").splitlines()[2]
    assert line == "| a \\| b c | 1 |"


def test_nothing_counted_says_so():
    text = to_markdown(build_table(Count((), 0, ("too dark",)), ["x.jpg"], "zh-CN"), "zh-CN")
    assert text.startswith("没有数到任何物体") and "- too dark" in text


def test_the_csv_is_the_same_table_and_opens_in_a_spreadsheet():
    count = parse_count(json.dumps(TWO_IMAGES))
    data = to_csv(build_table(count, ["左.jpg", "右.jpg"], "zh-CN"))
    assert data.startswith(b"\xef\xbb\xbf")  # the BOM that makes spreadsheets read UTF-8
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))
    assert rows == [
        ["物体", "左.jpg", "右.jpg", "合计", "说明"],
        ["apple", "3", "2", "5", ""],
        ["pear", "0", "1", "1", "half hidden"],
        ["合计", "3", "3", "6", ""],
    ]


def test_a_name_a_spreadsheet_would_run_as_a_formula_stays_text():
    count = Count((Row('=HYPERLINK("http://evil.example","x")', 1), Row("-1 cup", 1)), total=2)
    rows = list(
        csv.reader(io.StringIO(to_csv(build_table(count, ["a.jpg"], "en-US")).decode("utf-8-sig")))
    )
    assert rows[1][0].startswith("'=") and rows[2][0] == "'-1 cup"


def test_text_that_is_not_a_count_is_shown_as_written():
    assert as_written('{"objects": [{"na') == '```json\n{"objects": [{"na\n```'
    assert as_written("  I see three cats. ") == "I see three cats."
    assert as_written("") == ""


def test_the_stream_shows_a_status_then_the_table():
    counting = CountStream(["a.jpg", "b.jpg"], "en-US")
    assert "Counting" in counting.status()
    for piece in ['{"objects": [{"name": "apple", ', '"count": 3, "image": 1}, {"name": "pear", ']:
        counting.add(piece)
    assert "2" in counting.status()
    counting.add('"count": 1, "image": 2}], "total": 4, "uncertain": []}')
    outcome = counting.finish(truncated=False, max_tokens=1024)
    assert outcome.notice is None and outcome.text.startswith("| Object | a.jpg | b.jpg |")
    assert outcome.csv.decode("utf-8-sig").splitlines()[0] == "Object,a.jpg,b.jpg,Total"


@pytest.mark.parametrize(
    ("raw", "truncated", "key"),
    [
        (
            '{"objects": [{"name": "apple", "count": 3}], "total": 3, "uncertain": []}',
            True,
            "count.cut_off",
        ),
        ("Three apples.", False, "count.not_a_table"),
        ("", False, "count.no_answer"),
    ],
)
def test_a_count_that_is_not_a_table_falls_back_with_a_note(raw, truncated, key):
    counting = CountStream(["a.jpg"], "zh-CN")
    counting.add(raw)
    outcome = counting.finish(truncated=truncated, max_tokens=24)
    assert outcome.notice == key and outcome.csv is None
    assert outcome.text == as_written(raw)


def test_a_raw_tab_in_a_name_is_read_as_vllms_grammar_lets_it_through():
    count = parse_count(
        '{"objects": [{"name": "red\tapple", "count": 1}], "total": 1, "uncertain": []}'
    )
    assert count.objects[0].name == "red apple"
    assert "| red apple | 1 |" in to_markdown(build_table(count, ["a.jpg"], "en-US"), "en-US")


def test_code_points_that_cannot_be_stored_are_left_out_of_names_and_notes():
    text = r'{"objects": [{"name": "a\ud800b\u0000c", "count": 1, "note": "\u0007x"}], "total": 1, "uncertain": ["\udfff"]}'
    count = parse_count(text)
    assert count.objects[0] == Row("ab c", 1, None, "x") and count.uncertain == ()
    to_markdown(build_table(count, ["a.jpg"], "en-US"), "en-US").encode(
        "utf-8"
    )  # no surrogate left
