"""Validates FHIR JSON resources with an independent library, fhir.resources (PyPI).

Usage: python fhir_valid.py FILE...   (each file one resource: Patient, Bundle, OperationOutcome, ...)

fhir.resources has had no plain R4 (4.0.1) package since 6.5.0; its R4B subpackage (4.3.0) is
what openIMIS' own FHIR module validates against, and the resources served here (Patient,
Coverage, Bundle, OperationOutcome, CapabilityStatement) have the same shape in R4 and R4B.
fhir.resources checks structure: types, cardinalities, unknown elements, the patterns of ids,
dates and instants. It does not check that a code bound to a value set as "required" is one of
it, so the codes of such bindings that careledger emits are checked here against the value sets
of the specification (REQUIRED below). Profiles are not checked. Prints what failed, exits 1 on any.
"""

import importlib
import json
import re
import sys


def model(resource_type):
    module = importlib.import_module("fhir.resources.R4B." + resource_type.lower())
    return getattr(module, resource_type)


# (resource type or "*", JSON path of a code bound as required) -> the value set's codes (FHIR R4)
REQUIRED = {
    ("Patient", "gender"): {"male", "female", "other", "unknown"},
    ("Coverage", "status"): {"active", "cancelled", "draft", "entered-in-error"},
    ("Bundle", "type"): {"document", "message", "transaction", "transaction-response", "batch",
                         "batch-response", "history", "searchset", "collection"},
    ("Bundle", "entry.search.mode"): {"match", "include", "outcome"},
    ("OperationOutcome", "issue.severity"): {"fatal", "error", "warning", "information"},
    ("CapabilityStatement", "status"): {"draft", "active", "retired", "unknown"},
    ("CapabilityStatement", "kind"): {"instance", "capability", "requirements"},
    ("Device", "status"): {"active", "inactive", "entered-in-error", "unknown"},
    ("Device", "deviceName.type"): {"udi-label-name", "user-friendly-name", "patient-reported-name",
                                    "manufacturer-name", "model-name", "other"},
    ("ServiceRequest", "status"): {"draft", "active", "on-hold", "revoked", "completed",
                                   "entered-in-error", "unknown"},
    ("ServiceRequest", "intent"): {"proposal", "plan", "directive", "order", "original-order",
                                   "reflex-order", "filler-order", "instance-order", "option"},
    ("*", "identifier.use"): {"usual", "official", "temp", "secondary", "old"},
}


def values(node, path):
    """Every value at a dotted path, through lists."""
    if isinstance(node, list):
        for item in node:
            yield from values(item, path)
        return
    if not path:
        yield node
        return
    head, _, rest = path.partition(".")
    if isinstance(node, dict) and head in node:
        yield from values(node[head], rest)


def codes_out_of_their_sets(resource):
    kind = resource.get("resourceType")
    bad = []
    for (of, path), allowed in REQUIRED.items():
        if of in (kind, "*"):
            bad += [f"{kind}.{path} = {v!r}" for v in values(resource, path) if v not in allowed]
    for entry in resource.get("entry", []) if kind == "Bundle" else []:
        if isinstance(entry, dict) and isinstance(entry.get("resource"), dict):
            bad += codes_out_of_their_sets(entry["resource"])
    return bad


def main(paths):
    failed = 0
    for path in paths:
        with open(path, encoding="utf-8") as f:
            resource = json.load(f)
        kind = resource.get("resourceType", "")
        if not re.fullmatch(r"[A-Z][A-Za-z]+", kind):
            print(f"{path}: no resourceType")
            failed += 1
            continue
        try:
            model(kind).model_validate(resource)
        except Exception as e:  # a validation error, or a resource type the library does not know
            print(f"{path}: {kind} is not valid FHIR: {e}")
            failed += 1
            continue
        bad = codes_out_of_their_sets(resource)
        if bad:
            print(f"{path}: codes outside their required value sets: {', '.join(bad)}")
            failed += 1
    print(f"fhir.resources: {len(paths) - failed} of {len(paths)} valid")
    return 1 if failed or not paths else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
