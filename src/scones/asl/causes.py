"""The cause texts of runtime errors, as Step Functions words them, from one table.

Where AWS words one failure several ways (a Wait state's SecondsPath: missing, not a
long, negative), each form is a row here, and code picks a row instead of writing text.
Sources: the AWS-recorded executions in the conformance set and the Step Functions
developer guide; rows without a recording say so.
"""

from __future__ import annotations

import json
from typing import Any

_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode

CAUSES: dict[str, str] = {
    # JSONPath reads (InputPath, OutputPath, ItemsPath, *Path fields of Task and Map).
    "invalid_path": "Invalid path '{path}' : {reason}",
    "undefined_variable": "The variable is not defined",  # the reason of invalid_path
    # ".$" fields of payload templates (Parameters, ResultSelector, ItemSelector, Assign).
    "template_path_not_found": (
        "The JSONPath '{path}' specified for the field '{field}' could not be found in the "
        "input '{json}'"
    ),
    "template_path_undefined_variable": (
        "The JSONPath '{path}' specified for the field '{field}' references an undefined variable"
    ),
    "intrinsic_failed": (
        "The Intrinsic function '{function}' specified for the field '{field}' failed: {reason}"
    ),
    # Wait: SecondsPath and TimestampPath (recorded, except seconds_path_negative).
    "seconds_path_missing": "The SecondsPath parameter does not reference an input value: {path}",
    "seconds_path_not_long": (
        "The SecondsPath parameter cannot be parsed as a long value: {path} == {value}"
    ),
    "seconds_path_negative": (
        "The SecondsPath parameter references a negative value: {path} == {value}"
    ),
    "timestamp_path_missing": (
        "The TimestampPath parameter does not reference an input value: {path}"
    ),
    "timestamp_path_not_timestamp": (
        "The TimestampPath parameter does not reference a valid ISO-8601 extended offset "
        "date-time format string: {path} == {value}"
    ),
    "wait_too_long": "Wait state delay is too long.",
    # Task: TimeoutSecondsPath, HeartbeatSecondsPath.
    "path_not_positive_integer": (
        'The {field} field refers to value "{value}" which is not a valid positive integer: {path}'
    ),
    # Map: MaxConcurrencyPath, ToleratedFailureCountPath (recorded: not an integer).
    "path_not_integer": (
        'The {field} field refers to value "{value}" which is not a valid integer: {path}'
    ),
    "max_concurrency_negative": (
        "Expected non-negative integer for MaxConcurrency, got '{value}' instead."
    ),
    "path_not_percentage": (
        'The {field} field refers to value "{value}" which is not a valid percentage: {path}'
    ),
    # JSONata expressions (recorded; error States.QueryEvaluationError).
    "jsonata_threw": (
        "The JSONata expression '{expression}' specified for the field '{field}' threw an error "
        "during evaluation: {reason}"
    ),
    "jsonata_undefined": (
        "The JSONata expression '{expression}' specified for the field '{field}' returned "
        "nothing (undefined)."
    ),
    "jsonata_unsupported_type": (
        "The JSONata expression '{expression}' specified for the field '{field}' returned an "
        "unsupported result type."
    ),
    # JSONata states' own fields (error States.QueryEvaluationError).
    "jsonata_not_positive_integer": "The {field} field must be a positive integer, got {json}",
    "jsonata_not_non_negative_integer": (
        "The {field} field must be a non-negative integer, got {json}"
    ),
    "jsonata_not_percentage": (
        "The ToleratedFailurePercentage field must be a number between 0 and 100, got {json}"
    ),
    "jsonata_condition_not_boolean": (
        "The JSONata expression specified for the field 'Condition' returned a non-boolean "
        "value: {json}"
    ),
    "jsonata_not_timestamp": (  # recorded
        "The Timestamp field cannot be parsed as an ISO-8601 extended offset date-time format "
        "string: {value}"
    ),
    "jsonata_items_not_array": (  # recorded
        "The JSONata expression '{expression}' specified for the field 'Items' returned an "
        "unexpected result type. Expected 'array', but was '{type}' for value: {json}"
    ),
    "jsonata_map_input_not_array": "Map state input must be an array but was: {json}",
    # Fail: an ErrorPath or CausePath that selects something other than a string (the
    # developer guide: "must select a field whose value is a string"). Not recorded: worded
    # as the recorded MaxConcurrencyPath and TimeoutSecondsPath value errors are.
    "fail_path_not_string": (
        'The {field} field refers to value "{value}" which is not a valid string: {path}'
    ),
    "map_input_not_array": (
        "Invalid path '{path}' : Map state input must be an array but was: {json}"
    ),
}


def cause_value(value: Any) -> str:
    """A value as AWS quotes it in a cause: strings bare, everything else as JSON."""
    return value if isinstance(value, str) else _encode(value)


def cause(kind: str, **fields: Any) -> str:
    """The cause text `kind` of CAUSES with its fields filled in.

    `value` is quoted as AWS quotes values (strings bare), `json` is always JSON text.
    """
    if "value" in fields:
        fields["value"] = cause_value(fields["value"])
    if "json" in fields:
        fields["json"] = _encode(fields["json"])
    return CAUSES[kind].format(**fields)
