from __future__ import annotations

import base64
import io
import logging

import pytest
from PIL import Image

from label_studio_ml.results.label_config import LabelConfig
from label_studio_ml.testing.plugin import assert_conformant, recorded

from model import LLMInteractive, html_to_text, match_choices

CONFIG = """<View>
  <Text name="text" value="$text"/>
  <TextArea name="prompt" toName="text" editable="true" rows="2"/>
  <TextArea name="response" toName="text" editable="true" rows="4"/>
  <Choices name="sentiment" toName="text" choice="single">
    <Choice value="Positive"/><Choice value="Negative"/>
    <Choice value="Neutral" predicted_values="mixed,none"/>
  </Choices>
</View>"""
KEY = "sk-test-SECRET-0123456789"


def prompt_context(text: str) -> dict:
    return {
        "result": [
            {
                "id": "p1",
                "from_name": "prompt",
                "to_name": "text",
                "type": "textarea",
                "origin": "manual",
                "value": {"text": [text]},
            }
        ]
    }


def by_name(result: list[dict]) -> dict[str, dict]:
    return {r["from_name"]: r for r in result}


def test_typed_prompt_and_task_text_go_to_the_model_and_answer_fills_response_and_choices(make_client, use_server):
    use_server.answer = lambda body: "Negative."
    client = make_client(LLMInteractive)
    tasks = [{"id": 7, "data": {"text": "The battery died after an hour."}}]
    results = assert_conformant(client, CONFIG, tasks, context=prompt_context("What is the sentiment?"))
    items = by_name(results[0]["result"])
    assert items["prompt"]["value"]["text"] == ["What is the sentiment?"]
    assert items["response"]["value"]["text"] == ["Negative."]
    assert items["sentiment"]["value"]["choices"] == ["Negative"]
    request = use_server.requests[0]
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["Authorization"] == f"Bearer {KEY}"
    assert request["json"]["model"] == "scripted-model"
    assert request["json"]["temperature"] == 0
    text = use_server.user_text()
    assert text.startswith("What is the sentiment?\n\nThe battery died after an hour.")
    assert text.endswith("Answer with exactly one of these options: Positive, Negative, Neutral.")


def test_default_prompt_with_placeholder_inserts_the_text_once(make_client, use_server, monkeypatch):
    monkeypatch.setenv("LLM_DEFAULT_PROMPT", "Classify this review: «{text}». Be brief.")
    monkeypatch.setenv("LLM_SYSTEM_PROMPT", "You label data.")
    use_server.answer = lambda body: "positive"
    client = make_client(LLMInteractive)
    tasks = [{"id": i, "data": {"text": t}} for i, t in enumerate(["Great phone", "Awful {braces} case", "ok"])]
    results = assert_conformant(client, CONFIG, tasks)
    assert len(use_server.requests) == 3
    sent = sorted(use_server.user_text(i) for i in range(3))
    assert sent[0].startswith("Classify this review: «Awful {braces} case». Be brief.\n\nAnswer with")
    assert all(s.count("Classify") == 1 and "Great phone" not in s.split("»")[1] for s in sent)
    assert use_server.requests[0]["json"]["messages"][0] == {"role": "system", "content": "You label data."}
    for prediction in results:
        items = by_name(prediction["result"])
        assert items["sentiment"]["value"]["choices"] == ["Positive"]  # case-insensitive match
        assert items["prompt"]["value"]["text"] == ["Classify this review: «{text}». Be brief."]
        assert prediction["score"] == pytest.approx(0.9)


def test_no_prompt_anywhere_gives_empty_results_without_a_call(make_client, use_server):
    client = make_client(LLMInteractive)
    tasks = [{"id": 1, "data": {"text": "x"}}, {"id": 2, "data": {"text": "y"}}]
    results = assert_conformant(client, CONFIG, tasks, expect_regions=False)
    assert [r["result"] for r in results] == [[], []]
    assert use_server.requests == []


@pytest.mark.parametrize(
    "answer, expected, score",
    [
        ("Positive", ["Positive"], 1.0),
        ("  NEGATIVE!", ["Negative"], 0.9),
        ('"neutral".', ["Neutral"], 0.9),
        ("Mixed", ["Neutral"], 0.9),  # predicted_values
        ("The sentiment is negative, clearly.", ["Negative"], 0.6),  # named inside the answer
        ("It is mostly positive but somewhat negative", ["Positive"], 0.4),  # earliest of several
        ("Nonpositive feelings", [], None),  # whole words only
        ("I cannot tell", [], None),
        ("Postive", ["Positive"], 0.5),  # one word like one choice: a typo
        ("neg.", ["Negative"], 0.5),  # an abbreviation
        ("mixd", ["Neutral"], 0.5),  # like a predicted value
        ("xyz", [], None),
    ],
)
def test_answers_map_onto_choices(answer, expected, score):
    pair = LabelConfig(CONFIG).find("Choices")
    labels, got = match_choices(answer, pair)
    assert labels == expected
    assert got == (pytest.approx(score) if score is not None else None)


def test_an_abbreviated_answer_matches_its_label_loosely_as_upstream():
    config = """<View><Text name="text" value="$text"/><Choices name="topic" toName="text">
      <Choice value="technology"/><Choice value="sports"/><Choice value="politics"/></Choices></View>"""
    pair = LabelConfig(config).find("Choices")
    assert match_choices("tech", pair) == (["technology"], 0.5)
    assert match_choices("Sprots", pair) == (["sports"], 0.5)
    assert match_choices("tech\npol", pair, multiple=True) == (["technology", "politics"], 0.5)
    assert match_choices("weather", pair) == ([], None)


def test_multiple_choice_answers_map_to_several_labels(make_client, use_server, monkeypatch):
    config = CONFIG.replace('choice="single"', 'choice="multiple"')
    monkeypatch.setenv("LLM_DEFAULT_PROMPT", "Which apply?")
    use_server.answer = lambda body: "Positive, negative"
    client = make_client(LLMInteractive)
    results = assert_conformant(client, config, [{"id": 1, "data": {"text": "good and bad"}}])
    assert by_name(results[0]["result"])["sentiment"]["value"]["choices"] == ["Positive", "Negative"]
    assert "separated by commas: Positive, Negative, Neutral." in use_server.user_text()


def test_hypertext_and_paragraphs_are_sent_as_plain_text(make_client, use_server, monkeypatch):
    config = """<View>
      <HyperText name="page" value="$html"/>
      <Paragraphs name="chat" value="$dialogue" layout="dialogue"/>
      <TextArea name="summary" toName="page" rows="3"/>
    </View>"""
    monkeypatch.setenv("LLM_DEFAULT_PROMPT", "Summarise.")
    use_server.answer = lambda body: "A short summary."
    client = make_client(LLMInteractive)
    task = {
        "id": 3,
        "data": {
            "html": "<html><head><style>p{}</style></head><body><h1>Title</h1><p>First &amp; <b>bold</b></p>"
            "<script>alert(1)</script></body></html>",
            "dialogue": [{"author": "Ann", "text": "Hi"}, {"author": "Bob", "text": "Hello there"}],
        },
    }
    results = assert_conformant(client, config, [task])
    assert by_name(results[0]["result"])["summary"]["value"]["text"] == ["A short summary."]
    sent = use_server.user_text()
    assert "page:\nTitle\nFirst & bold" in sent
    assert "chat:\nAnn: Hi\nBob: Hello there" in sent
    assert "alert" not in sent and "<" not in sent
    assert html_to_text("<p>a</p><p>b<br>c</p>") == "a\nb\nc"


def test_image_goes_as_a_downscaled_data_url(make_client, use_server, monkeypatch, tmp_path):
    config = """<View><Image name="image" value="$image"/>
      <Choices name="kind" toName="image"><Choice value="Cat"/><Choice value="Dog"/></Choices></View>"""
    Image.new("RGB", (2048, 1024), (200, 30, 30)).save(tmp_path / "photo.png")
    monkeypatch.setenv("LLM_DEFAULT_PROMPT", "What animal is this?")
    use_server.answer = lambda body: "A dog."
    client = make_client(LLMInteractive, local_files_document_root=str(tmp_path))
    task = {"id": 5, "data": {"image": "/data/local-files/?d=photo.png"}}
    results = assert_conformant(client, config, [task])
    assert results[0]["result"][0]["value"]["choices"] == ["Dog"]
    content = use_server.requests[0]["json"]["messages"][-1]["content"]
    assert content[0] == {
        "type": "text",
        "text": "What animal is this?\n\nAnswer with exactly one of these options: Cat, Dog.",
    }
    url = content[1]["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    sent = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert sent.size == (1024, 512)
    assert sent.getpixel((10, 10)) == (200, 30, 30)


def test_retries_429_and_500_with_backoff_then_succeeds(make_client, use_server, monkeypatch):
    monkeypatch.setenv("LLM_BACKOFF", "0.2")
    use_server.then(429, headers={"Retry-After": "1"}).then(500).then(503)
    use_server.answer = lambda body: "Neutral"
    client = make_client(LLMInteractive)
    results = assert_conformant(
        client, CONFIG, [{"id": 1, "data": {"text": "meh"}}], context=prompt_context("Sentiment?")
    )
    assert by_name(results[0]["result"])["sentiment"]["value"]["choices"] == ["Neutral"]
    times = [r["time"] for r in use_server.requests]
    assert len(times) == 4
    gaps = [b - a for a, b in zip(times[:-1], times[1:], strict=True)]
    assert gaps[0] >= 0.95, "Retry-After is honoured"
    assert 0.2 <= gaps[1] < 0.9 and 0.4 <= gaps[2] < 1.5, f"exponential backoff: {gaps}"


def test_a_slow_answer_times_out_and_is_retried(make_client, use_server, monkeypatch):
    monkeypatch.setenv("LLM_TIMEOUT", "0.5")
    use_server.then(200, {"choices": [{"message": {"content": "Positive"}}]}, delay=2.0)
    use_server.answer = lambda body: "Negative"
    client = make_client(LLMInteractive)
    results = assert_conformant(client, CONFIG, [{"id": 1, "data": {"text": "x"}}], context=prompt_context("S?"))
    assert by_name(results[0]["result"])["sentiment"]["value"]["choices"] == ["Negative"], "the late answer is dropped"
    assert len(use_server.requests) == 2
    assert use_server.requests[1]["time"] - use_server.requests[0]["time"] < 1.5, "gave up at the timeout"


def test_gives_up_after_max_retries_with_a_reason_and_fails_fast_afterwards(make_client, use_server, monkeypatch):
    monkeypatch.setenv("LLM_MAX_RETRIES", "2")
    for _ in range(3):
        use_server.then(502, {"error": {"message": "upstream overloaded"}})
    client = make_client(LLMInteractive)
    client.post("/setup", json={"project": "1", "schema": CONFIG})
    body = {
        "tasks": [{"id": 1, "data": {"text": "x"}}],
        "project": "1",
        "label_config": CONFIG,
        "params": {"context": prompt_context("Sentiment?")},
    }
    reply = client.post("/predict", json=body)
    assert reply.status_code == 502
    assert "HTTP 502: upstream overloaded after 3 attempt(s)" in reply.json()["error"]
    assert len(use_server.requests) == 3
    again = client.post("/predict", json=body)
    assert again.status_code == 502 and len(use_server.requests) == 3, "no request storm while it is down"


def test_batch_with_one_failing_task_keeps_the_others(make_client, use_server, monkeypatch):
    monkeypatch.setenv("LLM_DEFAULT_PROMPT", "Sentiment?")
    monkeypatch.setenv("LLM_CONCURRENCY", "1")
    use_server.then(200, {"choices": []})  # malformed answer for the first task: not retried
    use_server.answer = lambda body: "Positive"
    client = make_client(LLMInteractive)
    results = assert_conformant(client, CONFIG, [{"id": 1, "data": {"text": "a"}}, {"id": 2, "data": {"text": "b"}}])
    assert results[0]["result"] == []
    assert by_name(results[1]["result"])["sentiment"]["value"]["choices"] == ["Positive"]


def test_auth_failure_is_clear_and_the_key_never_reaches_the_log(make_client, use_server, caplog):
    caplog.set_level(logging.DEBUG)
    use_server.answer = lambda body: "Positive"
    client = make_client(LLMInteractive)
    ok = assert_conformant(client, CONFIG, [{"id": 1, "data": {"text": "fine"}}], context=prompt_context("S?"))
    assert ok[0]["result"]
    use_server.then(401, {"error": {"message": "Incorrect API key provided: sk-tes***6789"}})
    client.post("/setup", json={"project": "2", "schema": CONFIG})
    reply = client.post(
        "/predict",
        json={
            "tasks": [{"id": 1, "data": {"text": "x"}}],
            "project": "2",
            "label_config": CONFIG,
            "params": {"context": prompt_context("S?")},
        },
    )
    assert reply.status_code == 502
    error = reply.json()["error"]
    assert "HTTP 401" in error and "OPENAI_API_KEY" in error and "Incorrect API key" in error
    assert "LLM authentication failed" in caplog.text
    assert len(use_server.requests) == 2, "401 is not retried"
    assert use_server.requests[-1]["headers"]["Authorization"] == f"Bearer {KEY}"
    assert KEY not in caplog.text and KEY not in reply.text
    assert "SECRET" not in caplog.text


def test_auth_failure_in_a_batch_costs_one_request(make_client, use_server, monkeypatch, caplog):
    monkeypatch.setenv("LLM_DEFAULT_PROMPT", "S?")
    monkeypatch.setenv("LLM_CONCURRENCY", "1")
    use_server.then(403, {"error": {"message": "no access to this model"}})
    client = make_client(LLMInteractive)
    client.post("/setup", json={"project": "1", "schema": CONFIG})
    tasks = [{"id": i, "data": {"text": str(i)}} for i in range(5)]
    reply = client.post("/predict", json={"tasks": tasks, "project": "1", "label_config": CONFIG})
    assert reply.status_code >= 500, "nothing is stored in LS, so the tasks are predicted again later"
    assert len(use_server.requests) == 1, "core's task-by-task retry fails fast: no request storm"
    assert "HTTP 403 (no access to this model)" in caplog.text
    assert KEY not in caplog.text


def test_extra_params_override_model_and_endpoint_and_the_env_key_stays_home(make_client, use_server, openai_server):
    from fake_openai import ScriptedOpenAI

    with ScriptedOpenAI("Negative") as other:
        client = make_client(LLMInteractive)
        for project, extra in (
            ("3", {"base_url": other.url + "/v1", "model": "llama3"}),
            ("4", {"OPENAI_BASE_URL": other.url + "/v1", "api_key": "project-key-42"}),
            ("5", {"model": "gpt-x", "temperature": 0.7}),
        ):
            client.post("/setup", json={"project": project, "schema": CONFIG, "extra_params": extra})
            reply = client.post(
                "/predict",
                json={
                    "tasks": [{"id": 1, "data": {"text": "t"}}],
                    "project": project,
                    "label_config": CONFIG,
                    "params": {"context": prompt_context("S?")},
                },
            )
            assert reply.status_code == 200, reply.text
    assert other.requests[0]["json"]["model"] == "llama3"
    assert "Authorization" not in other.requests[0]["headers"], "the env key goes only to the env endpoint"
    assert other.requests[1]["headers"]["Authorization"] == "Bearer project-key-42"
    assert [r["json"]["model"] for r in use_server.requests] == ["gpt-x"]
    assert use_server.requests[0]["json"]["temperature"] == 0.7
    assert use_server.requests[0]["headers"]["Authorization"] == f"Bearer {KEY}"


def test_azure_openai_settings(make_client, openai_server, monkeypatch):
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", openai_server.url)
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", "azure-key-0000")
    monkeypatch.setenv("AZURE_OPENAI_DEPLOYMENT", "gpt4o-prod")
    monkeypatch.setenv("AZURE_OPENAI_API_VERSION", "2024-10-21")
    monkeypatch.setenv("LLM_DEFAULT_PROMPT", "S?")
    client = make_client(LLMInteractive)
    results = assert_conformant(client, CONFIG, [{"id": 1, "data": {"text": "good"}}])
    assert by_name(results[0]["result"])["sentiment"]["value"]["choices"] == ["Positive"]
    request = openai_server.requests[0]
    assert request["path"] == "/openai/deployments/gpt4o-prod/chat/completions?api-version=2024-10-21"
    assert request["headers"]["api-key"] == "azure-key-0000"
    assert "Authorization" not in request["headers"] and "model" not in request["json"]


def annotation_event(prompt: str, task_id: int = 1, annotation_id: int = 1) -> dict:
    result = [
        {"from_name": "prompt", "to_name": "text", "type": "textarea", "value": {"text": [prompt]}},
        {"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": ["Positive"]}},
    ]
    return {
        "action": "ANNOTATION_CREATED",
        "project": {"id": 9, "label_config": CONFIG},
        "task": {"id": task_id, "data": {"text": "x"}, "project": 9},
        "annotation": {"id": annotation_id, "result": result, "was_cancelled": False},
    }


def test_fit_stores_the_prompt_as_a_version_and_predict_uses_it(make_client, use_server):
    client = make_client(LLMInteractive)
    v0 = client.post("/setup", json={"project": "9", "schema": CONFIG}).json()["model_version"]
    assert client.post("/webhook", json=annotation_event("Is the review happy?")).json()["status"] == "ok"
    assert client.runtime.trainer.wait_idle(20)
    v1 = client.post("/setup", json={"project": "9", "schema": CONFIG}).json()["model_version"]
    assert v1 != v0 and v1.startswith("llm_interactive-1-")
    results = assert_conformant(client, CONFIG, [{"id": 2, "data": {"text": "Loved it"}}], project="9")
    assert results[0]["model_version"] == v1
    assert use_server.user_text().startswith("Is the review happy?\n\nLoved it")
    client.post("/webhook", json=annotation_event("Is the review happy?", task_id=2, annotation_id=2))
    assert client.runtime.trainer.wait_idle(20)
    assert client.post("/setup", json={"project": "9", "schema": CONFIG}).json()["model_version"] == v1, (
        "the same prompt keeps the version"
    )
    client.post("/webhook", json=annotation_event("Is it sarcastic?", task_id=3, annotation_id=3))
    assert client.runtime.trainer.wait_idle(20)
    v2 = client.post("/setup", json={"project": "9", "schema": CONFIG}).json()["model_version"]
    assert v2.startswith("llm_interactive-2-")
    assert_conformant(client, CONFIG, [{"id": 2, "data": {"text": "Sure, great"}}], project="9")
    assert use_server.user_text().startswith("Is it sarcastic?")
    assert_conformant(
        client, CONFIG, [{"id": 2, "data": {"text": "Sure"}}], project="9", context=prompt_context("Typed wins")
    )
    assert use_server.user_text().startswith("Typed wins")


def test_recorded_label_studio_request(make_client, use_server, monkeypatch):
    """LS 1.23.2's own /setup and /predict bodies (Text + Choices, no TextArea): choices only."""
    monkeypatch.setenv("LLM_DEFAULT_PROMPT", "Sentiment of this text?")
    use_server.answer = lambda body: "Positive" if "love" in body["messages"][-1]["content"] else "Negative"
    client = make_client(LLMInteractive)
    setup = recorded("/setup")[0]["body"]
    assert client.post("/setup", json=setup).status_code == 200
    body = recorded("/predict")[0]["body"]
    reply = client.post("/predict", json=body)
    assert reply.status_code == 200, reply.text
    results = reply.json()["results"]
    assert len(results) == len(body["tasks"])
    for task, prediction in zip(body["tasks"], results, strict=True):
        expected = "Positive" if "love" in task["data"]["text"] else "Negative"
        assert prediction["result"][0]["value"]["choices"] == [expected]
        assert prediction["result"][0]["from_name"] == "label"


def test_config_without_response_or_choices_is_refused(make_client, use_server):
    client = make_client(LLMInteractive)
    config = '<View><Text name="text" value="$text"/><TextArea name="prompt" toName="text"/></View>'
    reply = client.post("/predict", json={"tasks": [{"id": 1, "data": {"text": "x"}}], "label_config": config})
    assert reply.status_code == 422
    assert "response TextArea or a Choices" in reply.json()["error"]


def test_settings_never_show_the_key_or_url_credentials():
    from llm_client import ProviderSettings

    s = ProviderSettings.resolve({"OPENAI_BASE_URL": "http://user:pw@127.0.0.1:1/v1", "OPENAI_API_KEY": KEY})
    assert s.endpoint == "http://127.0.0.1:1/v1/chat/completions"
    assert KEY not in repr(s) and KEY not in str(s.fingerprint())
    azure = ProviderSettings.resolve(
        {
            "AZURE_OPENAI_ENDPOINT": "https://r.openai.azure.com/",
            "AZURE_OPENAI_API_KEY": KEY,
            "AZURE_OPENAI_DEPLOYMENT": "d",
        }
    )
    assert (
        azure.provider == "azure"
        and azure.endpoint == "https://r.openai.azure.com/openai/deployments/d/chat/completions"
    )
    assert azure.headers()["api-key"] == KEY
    env = {"AZURE_OPENAI_ENDPOINT": "https://r.openai.azure.com", "AZURE_OPENAI_API_KEY": KEY}
    moved = ProviderSettings.resolve(env, {"azure_endpoint": "https://elsewhere.example"})
    assert moved.api_key == "" and "api-key" not in moved.headers()
    with pytest.raises(ValueError, match="LLM_PROVIDER"):
        ProviderSettings.resolve({"LLM_PROVIDER": "bard"})
