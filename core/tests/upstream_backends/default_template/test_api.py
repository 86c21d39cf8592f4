"""
Tests of the model's API, as `label-studio-ml create` writes them upstream. Run them with:

    pip install -r requirements-test.txt
    pytest
"""

import json

import pytest

from model import NewModel


@pytest.fixture
def client():
    from _wsgi import init_app

    app = init_app(model_class=NewModel)
    app.config["TESTING"] = True
    with app.test_client() as client:
        yield client


def test_predict(client):
    request = {
        "tasks": [{"id": 1, "data": {"text": "Some text"}}],
        "project": "1.1712000000",
        "label_config": '<View><Text name="text" value="$text"/>'
        '<Choices name="sentiment" toName="text"><Choice value="Positive"/></Choices></View>',
        "params": {"context": None},
    }
    response = client.post("/predict", data=json.dumps(request), content_type="application/json")
    assert response.status_code == 200
    response = json.loads(response.data)
    assert response == {"results": []}


def test_health(client):
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json["status"] == "UP"
