"""`dotbridge serve --print-connectors`: the ml-commons requests that let a cluster with
ml-commons + neural-search call the gateway's model API (pure functions: text out)."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from bridge.config import MODES

ConnectorRequest = tuple[str, str, dict[str, Any]]


def connector_requests(public_url: str, model: str, index: str) -> list[ConnectorRequest]:
    """The requests, in order, that register the gateway as a remote model in ml-commons.

    `public_url` is where the cluster reaches the gateway; `model` a served model's name;
    `index` the dotbridge index the rerank processor reads vectors from. Ids that ml-commons
    hands out are written `<...>` for the user to fill in.
    """
    base = public_url.rstrip("/")
    trusted = "^" + re.escape(base) + "/.*$"
    common = {"version": 1, "protocol": "http", "credential": {"dummy": "unused"}}
    embedding_connector = {
        "name": f"dotbridge embeddings ({model})",
        "description": "Vectors from the dotbridge gateway's model",
        **common,
        "parameters": {},
        "actions": [
            {
                "action_type": "predict",
                "method": "POST",
                "url": f"{base}/_dotbridge/models/{model}/_embed",
                "headers": {"content-type": "application/json"},
                "request_body": '{ "input": ${parameters.input} }',
                "pre_process_function": "connector.pre_process.default.embedding",
                "post_process_function": "connector.post_process.default.embedding",
            }
        ],
    }
    rerank_connector = {
        "name": f"dotbridge rerank ({index})",
        "description": "Exact dot-product re-ranking of stored vectors by the dotbridge gateway",
        **common,
        "parameters": {},
        "actions": [
            {
                "action_type": "predict",
                "method": "POST",
                "url": f"{base}/_dotbridge/rerank/{index}",
                "headers": {"content-type": "application/json"},
                "request_body": (
                    '{ "query": "${parameters.query}", "documents": ${parameters.documents}, '
                    '"top_n": ${parameters.top_n} }'
                ),
                "pre_process_function": "connector.pre_process.default.rerank",
                "post_process_function": "connector.post_process.default.rerank",
            }
        ],
    }
    return [
        (
            "PUT",
            "/_cluster/settings",
            {
                "persistent": {
                    "plugins.ml_commons.trusted_connector_endpoints_regex": [trusted],
                    "plugins.ml_commons.connector.private_ip_enabled": True,
                    "plugins.ml_commons.only_run_on_ml_node": False,
                }
            },
        ),
        ("POST", "/_plugins/_ml/connectors/_create", embedding_connector),
        (
            "POST",
            "/_plugins/_ml/models/_register?deploy=true",
            {
                "name": f"dotbridge-{model}",
                "function_name": "remote",
                "connector_id": "<connector_id of the embeddings connector>",
            },
        ),
        ("POST", "/_plugins/_ml/connectors/_create", rerank_connector),
        (
            "POST",
            "/_plugins/_ml/models/_register?deploy=true",
            {
                "name": f"dotbridge-rerank-{index}",
                "function_name": "remote",
                "connector_id": "<connector_id of the rerank connector>",
            },
        ),
        (
            "PUT",
            "/_search/pipeline/dotbridge-rerank",
            {
                "response_processors": [
                    {
                        "rerank": {
                            "ml_opensearch": {"model_id": "<model_id of the rerank model>"},
                            "context": {"document_fields": ["doc_id"]},
                        }
                    }
                ]
            },
        ),
        (
            "POST",
            f"/{index}/_search?search_pipeline=dotbridge-rerank",
            {
                "query": {
                    "neural": {
                        "vector": {
                            "query_text": "vitamin d and fractures",
                            "model_id": "<model_id of the embeddings model>",
                            "k": 10,
                        }
                    }
                },
                "ext": {"rerank": {"query_context": {"query_text": "vitamin d and fractures"}}},
            },
        ),
    ]


def render(requests: Sequence[ConnectorRequest]) -> str:
    """Dev Tools console text: one `METHOD path` line and its JSON body per request."""
    notes = {
        0: "# Let ml-commons call the gateway (a loopback or private address needs both).",
        1: "# The embedding connector: {'input': [texts]} -> [[floats], ...].",
        2: "# A remote model on it (deployed); note its model_id.",
        3: "# The rerank connector: {'query', 'documents': [doc_id...], 'top_n'} -> "
        "[{'index', 'relevance_score'}].",
        4: "# A plain remote model on it (deployed); note its model_id.",
        5: "# A search pipeline that re-ranks the returned page (it needs ext.rerank).",
        6: "# A neural query with the cluster's model, re-ranked by the pipeline.",
    }
    blocks = []
    for i, (method, path, body) in enumerate(requests):
        note = notes.get(i)
        head = f"{note}\n" if note else ""
        blocks.append(f"{head}{method} {path}\n{json.dumps(body, indent=2)}")
    return "\n\n".join(blocks) + "\n"


def alias_note(index: str) -> str:
    names = ", ".join(f"{index}.{mode}" for mode in MODES)
    return f"# Per-mode names for Discover ({names}): `dotbridge aliases {index}`.\n"
