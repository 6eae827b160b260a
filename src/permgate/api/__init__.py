"""The API surface: operations, the compiled router and the expandable-field graph."""

from permgate.api.expand import Expansion, ExpansionGraph, Step, graph_from_documents
from permgate.api.operations import Operation, operations_from_document
from permgate.api.params import BadParam, expand_from_body, expand_from_form, expand_from_query
from permgate.api.router import BadPath, Router, hostile_reason

__all__ = [
    "BadParam", "BadPath", "Expansion", "ExpansionGraph", "Operation", "Router", "Step",
    "expand_from_body", "expand_from_form", "expand_from_query", "graph_from_documents",
    "hostile_reason",
    "operations_from_document",
]
