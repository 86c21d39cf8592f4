from __future__ import annotations

from label_studio_ml.testing.plugin import assert_conformant

from model import SubstringMatcher

CONFIG = """<View><Labels name="label" toName="text"><Label value="Fruit"/><Label value="Org"/></Labels>
<Text name="text" value="$text"/></View>"""
TEXT = "Apple pie. I ate an apple; APPLE shares fell. Pineapple is not an apple? apple."


def context_for(text: str, start: int, end: int, label: str = "Fruit") -> dict:
    return {
        "result": [
            {
                "id": "sel1",
                "from_name": "label",
                "to_name": "text",
                "type": "labels",
                "origin": "manual",
                "value": {"start": start, "end": end, "text": text[start:end], "labels": [label]},
            }
        ]
    }


def test_every_occurrence_gets_the_label_and_spans_match_text(make_client):
    client = make_client(SubstringMatcher)
    tasks = [{"id": 1, "data": {"text": TEXT}}]
    start = TEXT.index("apple")
    results = assert_conformant(client, CONFIG, tasks, context=context_for(TEXT, start, start + 5))
    spans = results[0]["result"]
    got = sorted((r["value"]["start"], r["value"]["end"]) for r in spans)
    expected = sorted((i, i + 5) for i in range(len(TEXT)) if TEXT[i : i + 5].lower() == "apple" and i != start)
    assert got == expected
    for region in spans:
        v = region["value"]
        assert TEXT[v["start"] : v["end"]] == v["text"]
        assert v["labels"] == ["Fruit"]
        assert region["score"] == (1.0 if v["text"] == "apple" else 0.5)


def test_keyword_is_literal_not_a_regex(make_client):
    client = make_client(SubstringMatcher)
    text = "a.c abc a.c (x+) x+ xx"
    tasks = [{"id": 1, "data": {"text": text}}]
    results = assert_conformant(client, CONFIG, tasks, context=context_for(text, 0, 3))
    assert [r["value"]["text"] for r in results[0]["result"]] == ["a.c"]
    results = assert_conformant(client, CONFIG, tasks, context=context_for(text, 13, 15))
    assert [r["value"]["start"] for r in results[0]["result"]] == [17]


def test_whole_word_option(make_client, monkeypatch):
    monkeypatch.setenv("SUBSTRING_WHOLE_WORD", "true")
    client = make_client(SubstringMatcher)
    tasks = [{"id": 1, "data": {"text": TEXT}}]
    start = TEXT.index("apple")
    results = assert_conformant(client, CONFIG, tasks, context=context_for(TEXT, start, start + 5))
    assert all(r["value"]["text"].lower() == "apple" for r in results[0]["result"])
    assert not any(r["value"]["start"] == TEXT.index("Pineapple") + 4 for r in results[0]["result"])


def test_without_context_answers_empty_results_per_task(make_client):
    client = make_client(SubstringMatcher)
    tasks = [{"id": i, "data": {"text": TEXT}} for i in range(3)]
    results = assert_conformant(client, CONFIG, tasks, context=None, expect_regions=False)
    assert [r["result"] for r in results] == [[], [], []]


def test_minimal_recorded_context_is_tolerated(make_client):
    client = make_client(SubstringMatcher)
    tasks = [{"id": 1, "data": {"text": TEXT}}]
    context = {"result": [{"type": "keypointlabels", "value": {"x": 1, "y": 2}}]}
    results = assert_conformant(client, CONFIG, tasks, context=context, expect_regions=False)
    assert results[0]["result"] == []
