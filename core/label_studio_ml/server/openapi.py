"""OpenAPI description of the protocol this package serves (kept in sync with the routes by a test)."""

from __future__ import annotations

from typing import Any

_ERROR = {"$ref": "#/components/schemas/Error"}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    return {str(code): {"description": "error with a reason", **_json(_ERROR)} for code in codes}


def openapi_spec(model_class: str = "model") -> dict[str, Any]:
    health_body = _json({"$ref": "#/components/schemas/Health"})
    health = {
        "get": {
            "summary": "liveness and readiness",
            "security": [],
            "responses": {
                "200": {"description": "model loaded", **health_body},
                "503": {"description": "loading, failed or degraded", **health_body},
            },
        }
    }
    page = {"text/html": {"schema": {"type": "string"}}}
    root = {
        "get": {
            "summary": "as /health; a browser (Accept naming text/html above JSON) gets the status page,"
            " which needs basic auth when it is on",
            "security": [],
            "responses": {
                "200": {
                    "description": "model loaded, or the status page",
                    "content": {**health_body["content"], **page},
                },
                "401": {"description": "the status page without credentials", **_json(_ERROR)},
                "503": {"description": "loading, failed or degraded", **health_body},
            },
        }
    }
    common = _errors(400, 401, 413, 422, 503)
    webhook_reply = _json({"type": "object", "properties": {"status": {"type": "string"}, "job": {"type": "string"}}})
    return {
        "openapi": "3.0.3",
        "info": {"title": f"Label Studio ML backend ({model_class})", "version": "2.1.0"},
        "components": {
            "securitySchemes": {"basic": {"type": "http", "scheme": "basic"}},
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["status", "error"],
                    "properties": {"status": {"type": "integer"}, "error": {"type": "string"}},
                },
                "Health": {
                    "type": "object",
                    "required": ["status", "model_class"],
                    "properties": {
                        "status": {"type": "string"},
                        "model_class": {"type": "string"},
                        "reason": {"type": "string"},
                    },
                },
                "Task": {
                    "type": "object",
                    "required": ["data"],
                    "properties": {"id": {"type": "integer"}, "data": {"type": "object"}},
                },
                "Prediction": {
                    "type": "object",
                    "required": ["result", "score", "model_version"],
                    "properties": {
                        "result": {"type": "array", "items": {"type": "object"}},
                        "score": {"type": "number", "nullable": True},
                        "model_version": {"type": "string"},
                    },
                },
            },
        },
        "security": [{"basic": []}],
        "paths": {
            "/": root,
            "/health": health,
            "/setup": {
                "post": {
                    "summary": "store a project's label config and extra params; returns the model version",
                    "requestBody": {
                        "required": True,
                        **_json(
                            {
                                "type": "object",
                                "properties": {
                                    "project": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
                                    "schema": {"type": "string"},
                                    "hostname": {"type": "string"},
                                    "access_token": {"type": "string"},
                                    "extra_params": {
                                        "oneOf": [{"type": "object"}, {"type": "string"}],
                                        "nullable": True,
                                    },
                                },
                            }
                        ),
                    },
                    "responses": {
                        "200": {
                            "description": "model version",
                            **_json(
                                {
                                    "type": "object",
                                    "required": ["model_version"],
                                    "properties": {"model_version": {"type": "string"}},
                                }
                            ),
                        },
                        **common,
                    },
                }
            },
            "/predict": {
                "post": {
                    "summary": "one prediction per task, in order; interactive when params.context is an object",
                    "requestBody": {
                        "required": True,
                        **_json(
                            {
                                "type": "object",
                                "required": ["tasks"],
                                "properties": {
                                    "tasks": {
                                        "type": "array",
                                        "minItems": 1,
                                        "items": {"$ref": "#/components/schemas/Task"},
                                    },
                                    "project": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
                                    "label_config": {"type": "string"},
                                    "params": {
                                        "type": "object",
                                        "nullable": True,
                                        "properties": {"context": {"type": "object", "nullable": True}},
                                    },
                                },
                            }
                        ),
                    },
                    "responses": {
                        "200": {
                            "description": "predictions",
                            **_json(
                                {
                                    "type": "object",
                                    "required": ["results"],
                                    "properties": {
                                        "results": {
                                            "type": "array",
                                            "items": {"$ref": "#/components/schemas/Prediction"},
                                        }
                                    },
                                }
                            ),
                        },
                        **common,
                        **_errors(500),
                    },
                }
            },
            "/webhook": {
                "post": {
                    "summary": "LS events; training events schedule a background job",
                    "requestBody": {
                        "required": True,
                        **_json(
                            {
                                "type": "object",
                                "required": ["action"],
                                "properties": {"action": {"type": "string"}, "project": {"type": "object"}},
                            }
                        ),
                    },
                    "responses": {
                        "201": {"description": "a training job was scheduled", **webhook_reply},
                        "200": {"description": "ignored", **webhook_reply},
                        **common,
                    },
                }
            },
            "/train": {
                "post": {
                    "summary": "legacy training call of old LS versions (same as START_TRAINING)",
                    "requestBody": {"required": True, **_json({"type": "object", "required": ["project"]})},
                    "responses": {"200": {"description": "accepted", **_json({"type": "object"})}, **common},
                }
            },
            "/versions": {
                "get": {
                    "summary": "model versions kept (newest first)",
                    "parameters": [{"name": "project", "in": "query", "required": False, "schema": {"type": "string"}}],
                    "responses": {
                        "200": {
                            "description": "versions",
                            **_json(
                                {
                                    "type": "object",
                                    "required": ["versions"],
                                    "properties": {"versions": {"type": "array", "items": {"type": "string"}}},
                                }
                            ),
                        },
                        **common,
                    },
                }
            },
            "/jobs": {
                "get": {
                    "summary": "jobs of a project, newest first: training (kind train) and pre-annotation"
                    " (kind preannotate), each with its state and progress",
                    "parameters": [{"name": "project", "in": "query", "required": True, "schema": {"type": "string"}}],
                    "responses": {
                        "200": {"description": "jobs", **_json({"type": "object", "required": ["jobs"]})},
                        **common,
                    },
                },
                "post": {
                    "summary": "pre-annotate a whole LS project in the background (the server's LABEL_STUDIO_URL and"
                    " API key; on the workers' queue with REDIS_URL): every task lacking a prediction of the served"
                    " version gets one",
                    "requestBody": {
                        "required": True,
                        **_json(
                            {
                                "type": "object",
                                "required": ["project"],
                                "properties": {
                                    "project": {"type": "integer"},
                                    "kind": {"type": "string", "enum": ["preannotate"]},
                                    "batch_size": {"type": "integer", "minimum": 1, "maximum": 10000},
                                },
                            }
                        ),
                    },
                    "responses": {
                        "202": {
                            "description": "started, or the project's running job",
                            **_json(
                                {
                                    "type": "object",
                                    "required": ["job", "kind", "project", "status"],
                                    "properties": {
                                        "job": {"type": "string"},
                                        "kind": {"type": "string"},
                                        "project": {"type": "string"},
                                        "state": {"type": "string", "nullable": True},
                                        "status": {"type": "string", "enum": ["started", "already running"]},
                                    },
                                }
                            ),
                        },
                        **common,
                        **_errors(404, 502),
                    },
                },
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics",
                    "responses": {
                        "200": {
                            "description": "text exposition format",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        },
                        **_errors(401),
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "summary": "this document",
                    "security": [],
                    "responses": {"200": {"description": "OpenAPI", **_json({"type": "object"})}},
                }
            },
        },
    }
