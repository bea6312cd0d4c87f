"""The typed model of the sidecar's documents (sidecar/documents.py) against what is served."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sidecar import documents, protocol
from sidecar.openapi import load

STRUCTURE = ("type", "properties", "required", "additionalProperties", "items", "nullable",
             "enum", "$ref", "anyOf")


def structure(node: Any) -> Any:
    """The parts of an OpenAPI schema that say what the document is (no descriptions, bounds)."""
    if isinstance(node, list):
        return [structure(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: structure(v) for k, v in node.items() if k in STRUCTURE}
    if "properties" in node:
        out["properties"] = {k: structure(v) for k, v in node["properties"].items()}
    if "required" in out:
        out["required"] = sorted(out["required"])
    return out


OPENAPI = json.loads(load("sidecar"))["components"]["schemas"]


@pytest.mark.parametrize("document", documents.COMPONENTS, ids=lambda d: d.__name__)
def test_the_openapi_description_says_what_the_model_says(document: type) -> None:
    """Each component of sidecar/openapi/sidecar.json has the model's keys, types and nulls."""
    assert structure(OPENAPI[document.__name__]) == structure(documents.schema(document))


def test_every_component_of_the_openapi_description_is_in_the_model() -> None:
    """No document is described by hand only."""
    assert set(OPENAPI) == {d.__name__ for d in documents.COMPONENTS}


def test_one_list_of_windows_and_of_health_states() -> None:
    """The model's windows and health states are the ones the protocol and the documents use."""
    assert (*protocol.HEALTH_STATES, "unknown") == documents.HEALTH_STATES
    snapshot = documents.schema(documents.Snapshot)["properties"]["windows"]
    assert list(snapshot["properties"]) == [*documents.WINDOWS, documents.ALL]


@pytest.mark.parametrize(("value", "expected"), [
    (3, 3.0), (2.5, 2.5), (True, None), ("7", None), (float("nan"), None),
    (float("inf"), None), (None, None), ([1], None)])
def test_a_number_is_a_finite_number_or_none(value: Any, expected: float | None) -> None:
    """number(): what a pod sends is a figure only when it is a finite int or float."""
    assert documents.number(value) == expected


def test_text_and_counts_are_cut_and_cleaned() -> None:
    """text() cuts with an ellipsis and turns numbers into text; counts() drops non-numbers."""
    assert documents.text("x" * 10, 5) == "xxxx…" and documents.text(12) == "12"
    assert documents.text(None) is None and documents.text({"a": 1}) is None
    assert documents.counts({"OK": 3, "Internal": "x", 7: 2.9, "Bad": float("nan")}) == {
        "OK": 3, "7": 2}
    assert len(documents.counts({str(i): i for i in range(100)})) == documents.MAX_ENTRIES
    assert documents.counts([1, 2]) == {}
