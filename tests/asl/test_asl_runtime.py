"""Runtime behaviour: error paths, retries, timeouts, limits, concurrency and the history."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import pytest

from scones.asl import (
    FakeClock,
    Resources,
    StatesError,
    TaskError,
    execute,
    execute_async,
    load,
)

LAMBDA_ARN = "arn:aws:lambda:us-east-1:123456789012:function:work"


def _invoke(fn: str = "work", **extra: Any) -> dict[str, Any]:
    st = {
        "Type": "Task",
        "Resource": "arn:aws:states:::lambda:invoke",
        "Parameters": {"FunctionName": fn, "Payload.$": "$"},
    }
    st.update(extra)
    if "Next" not in st:
        st["End"] = True
    return st


def _machine(states: dict[str, Any], start: str = "A", **top: Any) -> Any:
    return load({"StartAt": start, "States": states, **top})


def _res(handler: Any, name: str = "work") -> Resources:
    return Resources().register_lambda(name, handler)


def _boom(event: Any, context: Any) -> Any:
    raise ValueError("it broke")


# --- task failures, Catch, Retry ---


def test_uncaught_task_failure_fails_execution_with_lambda_error() -> None:
    ex = execute(_machine({"A": _invoke()}), {"x": 1}, _res(_boom), clock=FakeClock())
    assert ex.status == "FAILED"
    assert ex.error == "ValueError"
    cause = json.loads(ex.cause)
    assert cause["errorMessage"] == "it broke"
    assert cause["errorType"] == "ValueError"
    assert isinstance(cause["requestId"], str)
    assert any("_boom" in frame for frame in cause["stackTrace"])
    assert ex.event_types == [
        "ExecutionStarted",
        "TaskStateEntered",
        "TaskScheduled",
        "TaskStarted",
        "TaskFailed",
        "ExecutionFailed",
    ]
    failed = ex.history[-1]["executionFailedEventDetails"]
    assert failed == {"error": "ValueError", "cause": ex.cause}


def test_catch_routes_with_result_path() -> None:
    m = _machine(
        {
            "A": _invoke(
                Catch=[
                    {"ErrorEquals": ["KeyError"], "Next": "Wrong"},
                    {
                        "ErrorEquals": ["States.TaskFailed"],
                        "ResultPath": "$.err",
                        "Next": "Handled",
                    },
                ],
                Next="Wrong",
            ),
            "Handled": {"Type": "Pass", "End": True},
            "Wrong": {"Type": "Fail", "Error": "Wrong"},
        }
    )
    ex = execute(m, {"keep": True}, _res(_boom), clock=FakeClock())
    assert ex.status == "SUCCEEDED"
    assert ex.output["keep"] is True
    assert ex.output["err"]["Error"] == "ValueError"
    assert json.loads(ex.output["err"]["Cause"])["errorMessage"] == "it broke"
    assert ex.event_types[-4:] == [
        "TaskStateExited",
        "PassStateEntered",
        "PassStateExited",
        "ExecutionSucceeded",
    ]


def test_retry_then_success_uses_backoff_without_sleeping() -> None:
    calls = []

    def flaky(event: Any, context: Any) -> Any:
        calls.append(1)
        if len(calls) < 3:
            raise TaskError("Lambda.TooManyRequestsException", "slow down")
        return {"ok": len(calls)}

    clock = FakeClock()
    m = _machine(
        {
            "A": _invoke(
                Retry=[
                    {
                        "ErrorEquals": ["Lambda.TooManyRequestsException"],
                        "IntervalSeconds": 2,
                        "MaxAttempts": 6,
                        "BackoffRate": 2,
                    }
                ],
                OutputPath="$.Payload",
            )
        }
    )
    ex = execute(m, {}, _res(flaky), clock=clock)
    assert ex.status == "SUCCEEDED"
    assert ex.output == {"ok": 3}
    assert clock.sleeps == [2, 4]  # the waits went to the fake clock, none was real
    assert ex.event_types.count("TaskScheduled") == 3
    assert ex.event_types.count("TaskStateEntered") == 1


def test_retry_exhaustion_fails_with_last_error() -> None:
    clock = FakeClock()
    m = _machine(
        {
            "A": _invoke(
                Retry=[
                    {
                        "ErrorEquals": ["States.ALL"],
                        "IntervalSeconds": 1,
                        "MaxAttempts": 2,
                        "BackoffRate": 3,
                        "MaxDelaySeconds": 2,
                    }
                ]
            )
        }
    )
    ex = execute(m, {}, _res(_boom), clock=clock)
    assert ex.status == "FAILED"
    assert ex.error == "ValueError"
    assert clock.sleeps == [1, 2]  # 1, then min(3, MaxDelaySeconds=2)
    assert ex.event_types.count("TaskFailed") == 3


def test_max_attempts_zero_never_retries() -> None:
    m = _machine({"A": _invoke(Retry=[{"ErrorEquals": ["States.ALL"], "MaxAttempts": 0}])})
    ex = execute(m, {}, _res(_boom), clock=FakeClock())
    assert ex.event_types.count("TaskFailed") == 1


# --- timeouts ---


def test_task_timeout_seconds_raises_states_timeout() -> None:
    clock = FakeClock()

    def slow(event: Any, context: Any) -> Any:
        clock.sleep(30)  # "takes" 30 s of fake time
        return {}

    m = _machine({"A": _invoke(TimeoutSeconds=10)})
    ex = execute(m, {}, _res(slow), clock=clock)
    assert ex.status == "FAILED"
    assert ex.error == "States.Timeout"
    assert ex.event_types == [
        "ExecutionStarted",
        "TaskStateEntered",
        "TaskScheduled",
        "TaskStarted",
        "TaskTimedOut",
        "ExecutionFailed",
    ]
    assert ex.history[2]["taskScheduledEventDetails"]["timeoutInSeconds"] == 10


def test_task_timeout_can_be_caught() -> None:
    clock = FakeClock()
    m = _machine(
        {
            "A": _invoke(
                TimeoutSeconds=1, Catch=[{"ErrorEquals": ["States.Timeout"], "Next": "B"}], Next="B"
            ),
            "B": {"Type": "Pass", "End": True},
        }
    )
    ex = execute(m, {}, _res(lambda e, c: clock.sleep(5)), clock=clock)
    assert ex.status == "SUCCEEDED"
    assert ex.output == {"Error": "States.Timeout", "Cause": ""}


def test_task_timeout_with_real_clock_abandons_hung_handler() -> None:
    release = threading.Event()
    handler_returned = threading.Event()

    def hung(event: Any, context: Any) -> Any:
        release.wait(60)
        handler_returned.set()
        return event

    m = _machine({"A": _invoke(TimeoutSeconds=1)})
    ex = execute(m, {}, _res(hung))
    # The execution ended while the handler was still blocked: it was abandoned, not awaited.
    assert not handler_returned.is_set()
    release.set()
    assert ex.error == "States.Timeout"


def test_machine_timeout_seconds_times_out_execution() -> None:
    clock = FakeClock()
    m = _machine(
        {"A": {"Type": "Wait", "Seconds": 100, "Next": "B"}, "B": {"Type": "Pass", "End": True}},
        TimeoutSeconds=10,
    )
    ex = execute(m, {}, Resources(), clock=clock)
    assert ex.status == "TIMED_OUT"
    assert ex.error == "States.Timeout"
    assert ex.event_types == ["ExecutionStarted", "WaitStateEntered", "ExecutionTimedOut"]
    assert clock.sleeps == [10]


def test_wait_state_uses_the_clock() -> None:
    clock = FakeClock(start=1_000.0)
    m = _machine(
        {
            "A": {"Type": "Wait", "SecondsPath": "$.s", "Next": "B"},
            "B": {"Type": "Wait", "Timestamp": "1970-01-01T01:00:00Z", "End": True},
        }
    )
    ex = execute(m, {"s": 60}, Resources(), clock=clock)
    assert ex.status == "SUCCEEDED"
    assert clock.sleeps == [60.0, 3600.0 - 1060.0]


# --- payload limit ---


def test_task_result_over_256_kib_is_data_limit_exceeded() -> None:
    m = _machine({"A": _invoke()})
    ex = execute(m, {}, _res(lambda e, c: "x" * (256 * 1024)), clock=FakeClock())
    assert ex.status == "FAILED"
    assert ex.error == "States.DataLimitExceeded"
    assert ex.cause == (
        "The state/task 'lambda' returned a result with a size exceeding the maximum "
        "number of bytes service limit."
    )
    assert "TaskFailed" in ex.event_types


def test_state_output_over_256_kib_fails_execution() -> None:
    m = _machine({"A": {"Type": "Pass", "Result": "é" * (130 * 1024), "End": True}})  # 2 bytes each
    ex = execute(m, {}, Resources(), clock=FakeClock())
    assert ex.error == "States.DataLimitExceeded"
    assert "'A'" in ex.cause
    assert ex.event_types == ["ExecutionStarted", "PassStateEntered", "ExecutionFailed"]


# --- States.Runtime ---


def test_missing_input_path_is_states_runtime() -> None:
    m = _machine({"A": {"Type": "Pass", "InputPath": "$.missing", "End": True}})
    ex = execute(m, {"a": 1}, Resources(), clock=FakeClock())
    assert ex.error == "States.Runtime"
    assert ex.cause == (
        "An error occurred while executing the state 'A' (entered at the event id #2). "
        "Invalid path '$.missing' : No results for path: $['missing']"
    )


def test_missing_parameter_path_is_states_runtime_and_not_catchable() -> None:
    m = _machine(
        {
            "A": _invoke(
                Parameters={"FunctionName": "work", "v.$": "$.nope"},
                Catch=[{"ErrorEquals": ["States.ALL"], "Next": "B"}],
                Next="B",
            ),
            "B": {"Type": "Pass", "End": True},
        }
    )
    ex = execute(m, {"a": 1}, _res(lambda e, c: e), clock=FakeClock())
    assert ex.status == "FAILED"
    assert ex.error == "States.Runtime"
    assert (
        "The JSONPath '$.nope' specified for the field 'v.$' could not be found in the input "
        "'{\"a\":1}'" in ex.cause
    )


def test_intrinsic_error_is_states_runtime() -> None:
    m = _machine(
        {"A": {"Type": "Pass", "Parameters": {"v.$": "States.ArrayGetItem($.a, 5)"}, "End": True}}
    )
    ex = execute(m, {"a": [1]}, Resources(), clock=FakeClock())
    assert ex.error == "States.Runtime"
    assert "States.ArrayGetItem" in ex.cause


# --- Parallel and Map ---


def test_parallel_branch_failure_fails_the_state() -> None:
    m = _machine(
        {
            "P": {
                "Type": "Parallel",
                "End": True,
                "Branches": [
                    {"StartAt": "ok", "States": {"ok": {"Type": "Pass", "End": True}}},
                    {
                        "StartAt": "bad",
                        "States": {"bad": {"Type": "Fail", "Error": "Branch.Bad", "Cause": "no"}},
                    },
                ],
            }
        },
        start="P",
    )
    ex = execute(m, {}, Resources(), clock=FakeClock())
    assert (ex.status, ex.error, ex.cause) == ("FAILED", "Branch.Bad", "no")
    assert "ParallelStateFailed" in ex.event_types


def test_parallel_output_keeps_branch_order() -> None:
    m = _machine(
        {
            "P": {
                "Type": "Parallel",
                "End": True,
                "Branches": [
                    {
                        "StartAt": f"b{i}",
                        "States": {f"b{i}": {"Type": "Pass", "Result": i, "End": True}},
                    }
                    for i in range(5)
                ],
            }
        },
        start="P",
    )
    assert execute(m, {}, Resources(), clock=FakeClock()).output == [0, 1, 2, 3, 4]


def test_parallel_branches_run_concurrently() -> None:
    barrier = threading.Barrier(3, timeout=30)  # the timeout only bounds a hang

    def meet(event: Any, context: Any) -> Any:
        barrier.wait()  # deadlocks (then BrokenBarrierError) unless all three run at once
        return event

    branches = [
        {
            "StartAt": f"t{i}",
            "States": {f"t{i}": {"Type": "Task", "Resource": LAMBDA_ARN, "End": True}},
        }
        for i in range(3)  # state names are unique in the whole machine
    ]
    m = _machine({"P": {"Type": "Parallel", "End": True, "Branches": branches}}, start="P")
    ex = execute(m, {"v": 1}, _res(meet), clock=FakeClock())
    assert ex.status == "SUCCEEDED", ex.cause
    assert ex.output == [{"v": 1}] * 3


def test_map_respects_max_concurrency() -> None:
    lock = threading.Lock()
    state = {"now": 0, "peak": 0}
    # Iterations meet in threes: each round proves 3 ran at once (fewer would break the
    # barrier), and the peak count proves never more. The timeout only bounds a hang.
    meet = threading.Barrier(3, timeout=30)

    def work(event: Any, context: Any) -> Any:
        with lock:
            state["now"] += 1
            state["peak"] = max(state["peak"], state["now"])
        meet.wait()
        with lock:
            state["now"] -= 1
        return event * 2

    m = _machine(
        {
            "M": {
                "Type": "Map",
                "MaxConcurrency": 3,
                "End": True,
                "ItemProcessor": {
                    "StartAt": "t",
                    "States": {"t": {"Type": "Task", "Resource": LAMBDA_ARN, "End": True}},
                },
            }
        },
        start="M",
    )
    ex = execute(m, list(range(12)), _res(work), clock=FakeClock())
    assert ex.status == "SUCCEEDED"
    assert ex.output == [i * 2 for i in range(12)]
    assert state["peak"] == 3
    assert ex.event_types.count("MapIterationStarted") == 12


def test_map_tolerated_failures() -> None:
    def work(event: Any, context: Any) -> Any:
        if event % 4 == 0:
            raise RuntimeError(f"bad {event}")
        return event

    proc = {"StartAt": "t", "States": {"t": {"Type": "Task", "Resource": LAMBDA_ARN, "End": True}}}
    tolerant = _machine(
        {
            "M": {
                "Type": "Map",
                "ToleratedFailureCount": 2,
                "MaxConcurrency": 1,
                "End": True,
                "ItemProcessor": proc,
            }
        },
        start="M",
    )
    ex = execute(tolerant, list(range(8)), _res(work), clock=FakeClock())
    assert ex.status == "SUCCEEDED"
    assert ex.output[1:4] == [1, 2, 3]
    assert ex.output[0]["Error"] == "RuntimeError"
    assert ex.event_types.count("MapIterationFailed") == 2

    strict = _machine(
        {
            "M": {
                "Type": "Map",
                "ToleratedFailurePercentage": 10,
                "MaxConcurrency": 1,
                "End": True,
                "ItemProcessor": proc,
            }
        },
        start="M",
    )
    ex = execute(strict, list(range(8)), _res(work), clock=FakeClock())
    assert (ex.status, ex.error) == ("FAILED", "States.ExceedToleratedFailureThreshold")


def test_map_item_selector_and_context() -> None:
    m = _machine(
        {
            "M": {
                "Type": "Map",
                "ItemsPath": "$.items",
                "End": True,
                "ItemSelector": {
                    "i.$": "$$.Map.Item.Index",
                    "v.$": "$$.Map.Item.Value",
                    "k.$": "$.k",
                },
                "ItemProcessor": {"StartAt": "p", "States": {"p": {"Type": "Pass", "End": True}}},
            }
        },
        start="M",
    )
    ex = execute(m, {"items": ["a", "b"], "k": 7}, Resources(), clock=FakeClock())
    assert ex.output == [{"i": 0, "v": "a", "k": 7}, {"i": 1, "v": "b", "k": 7}]


# --- Lambda integration and history shape ---


def test_lambda_invoke_result_shape_and_function_name_forms() -> None:
    seen = []

    def handler(event: Any, context: Any) -> Any:
        seen.append(
            (context.function_name, context.invoked_function_arn, context.memory_limit_in_mb)
        )
        assert context.get_remaining_time_in_millis() > 0
        assert context.aws_request_id
        return {"body": event}

    names = [
        "work",
        "work:prod",
        "123456789012:function:work",
        "arn:aws:lambda:us-east-1:123456789012:function:work:$LATEST",
    ]
    for fn in names:
        ex = execute(_machine({"A": _invoke(fn)}), {"n": 1}, _res(handler), clock=FakeClock())
        assert ex.status == "SUCCEEDED", ex.cause
        out = ex.output
        assert out["Payload"] == {"body": {"n": 1}}
        assert out["StatusCode"] == 200
        assert out["ExecutedVersion"] == ("prod" if fn == "work:prod" else "$LATEST")
        assert out["SdkHttpMetadata"]["HttpStatusCode"] == 200
        assert (
            out["SdkResponseMetadata"]["RequestId"]
            == out["SdkHttpMetadata"]["HttpHeaders"]["x-amzn-RequestId"]
        )
    assert {s[0] for s in seen} == {"work"}


def test_history_records_ids_links_and_details() -> None:
    m = _machine({"A": _invoke(OutputPath="$.Payload")})
    ex = execute(
        m, {"in": 1}, _res(lambda e, c: {"out": e["in"] + 1}), clock=FakeClock(), name="exec-1"
    )
    h = ex.history
    assert [e["id"] for e in h] == list(range(1, len(h) + 1))
    assert [e["previousEventId"] for e in h] == [0, 0, 2, 3, 4, 5, 6]
    assert h[0]["executionStartedEventDetails"]["input"] == '{"in":1}'
    assert h[2]["taskScheduledEventDetails"] == {
        "resourceType": "lambda",
        "resource": "invoke",
        "region": "us-east-1",
        "parameters": '{"FunctionName":"work","Payload":{"in":1}}',
    }
    assert h[3]["taskStartedEventDetails"] == {"resourceType": "lambda", "resource": "invoke"}
    assert json.loads(h[4]["taskSucceededEventDetails"]["output"])["Payload"] == {"out": 2}
    assert h[5]["stateExitedEventDetails"] == {
        "name": "A",
        "output": '{"out":2}',
        "outputDetails": {"truncated": False},
    }
    assert ex.output == {"out": 2}
    assert ex.name == "exec-1" and ex.arn.endswith(":exec-1")


def test_legacy_lambda_arn_records_lambda_function_events() -> None:
    m = _machine({"A": {"Type": "Task", "Resource": LAMBDA_ARN, "End": True}})
    ex = execute(m, {"a": 1}, _res(lambda e, c: [e]), clock=FakeClock())
    assert ex.output == [{"a": 1}]
    assert ex.event_types == [
        "ExecutionStarted",
        "TaskStateEntered",
        "LambdaFunctionScheduled",
        "LambdaFunctionStarted",
        "LambdaFunctionSucceeded",
        "TaskStateExited",
        "ExecutionSucceeded",
    ]


def test_generic_resource_registration() -> None:
    m = _machine(
        {
            "A": {
                "Type": "Task",
                "Resource": "arn:aws:states:::sqs:sendMessage",
                "Parameters": {"QueueUrl": "q", "MessageBody.$": "$"},
                "End": True,
            }
        }
    )
    sent = []
    res = Resources().register(
        "arn:aws:states:::sqs:sendMessage", lambda params: sent.append(params) or {"MessageId": "1"}
    )
    ex = execute(m, {"m": 1}, res, clock=FakeClock())
    assert ex.output == {"MessageId": "1"}
    assert sent == [{"QueueUrl": "q", "MessageBody": {"m": 1}}]
    assert ex.history[2]["taskScheduledEventDetails"]["resourceType"] == "sqs"


def test_handler_states_error_sets_error_name() -> None:
    res = Resources().register(
        "arn:aws:states:::sns:publish",
        lambda p: (_ for _ in ()).throw(StatesError("SNS.Oops", "denied")),
    )
    m = _machine({"A": {"Type": "Task", "Resource": "arn:aws:states:::sns:publish", "End": True}})
    ex = execute(m, {}, res, clock=FakeClock())
    assert (ex.error, ex.cause) == ("SNS.Oops", "denied")


# --- data flow, variables, async ---


def test_input_output_processing_pipeline() -> None:
    m = _machine(
        {
            "A": _invoke(
                InputPath="$.job",
                ResultSelector={"v.$": "$.Payload.value"},
                ResultPath="$.result",
                OutputPath="$.result",
            )
        }
    )
    ex = execute(m, {"job": {"x": 20}}, _res(lambda e, c: {"value": e["x"] * 2}), clock=FakeClock())
    assert ex.output == {"v": 40}


def test_assign_and_variables() -> None:
    m = _machine(
        {
            "A": {
                "Type": "Pass",
                "Result": {"n": 5},
                "Assign": {"count.$": "$.n", "label": "fixed"},
                "Next": "B",
            },
            "B": {
                "Type": "Pass",
                "Parameters": {
                    "c.$": "$count",
                    "l.$": "$label",
                    "s.$": "States.Format('{}-{}', $label, $count)",
                },
                "End": True,
            },
        }
    )
    ex = execute(m, {}, Resources(), clock=FakeClock())
    assert ex.output == {"c": 5, "l": "fixed", "s": "fixed-5"}
    assert ex.history[2]["stateExitedEventDetails"]["assignedVariables"] == {
        "count": "5",
        "label": '"fixed"',
    }


def test_execute_async() -> None:
    m = _machine({"A": _invoke(OutputPath="$.Payload")})
    ex = asyncio.run(execute_async(m, {"a": 1}, _res(lambda e, c: e), clock=FakeClock()))
    assert ex.output == {"a": 1}


def test_machine_is_reusable_across_threads() -> None:
    m = _machine({"A": _invoke(OutputPath="$.Payload")})
    res = _res(lambda e, c: {"i": e["i"]})
    outs: list[Any] = [None] * 8

    def run(i: int) -> None:
        outs[i] = execute(m, {"i": i}, res, clock=FakeClock()).output

    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outs == [{"i": i} for i in range(8)]


def test_no_choice_matched() -> None:
    m = _machine(
        {
            "C": {
                "Type": "Choice",
                "Choices": [{"Variable": "$.x", "NumericGreaterThan": 1, "Next": "Y"}],
            },
            "Y": {"Type": "Succeed"},
        },
        start="C",
    )
    ex = execute(m, {"x": 0}, Resources(), clock=FakeClock())
    assert ex.error == "States.NoChoiceMatched"


@pytest.mark.parametrize(("value", "expected"), [(3, "big"), (1, "small"), ("s", "other")])
def test_choice_routes(value: Any, expected: str) -> None:
    m = _machine(
        {
            "C": {
                "Type": "Choice",
                "Default": "other",
                "Choices": [
                    {
                        "And": [
                            {"Variable": "$.v", "IsNumeric": True},
                            {"Variable": "$.v", "NumericGreaterThan": 2},
                        ],
                        "Next": "big",
                    },
                    {"Not": {"Variable": "$.v", "IsString": True}, "Next": "small"},
                ],
            },
            "big": {"Type": "Pass", "Result": "big", "End": True},
            "small": {"Type": "Pass", "Result": "small", "End": True},
            "other": {"Type": "Pass", "Result": "other", "End": True},
        },
        start="C",
    )
    assert execute(m, {"v": value}, Resources(), clock=FakeClock()).output == expected


def test_runaway_loop_stops_at_history_limit() -> None:
    m = _machine(
        {
            "W": {"Type": "Wait", "Seconds": 1, "Next": "C"},
            "C": {
                "Type": "Choice",
                "Choices": [{"Variable": "$.go", "BooleanEquals": True, "Next": "W"}],
            },
        },
        start="W",
    )
    ex = execute(m, {"go": True}, Resources(), clock=FakeClock())
    assert ex.status == "FAILED"
    assert ex.error == "States.Runtime"
    assert len(ex.history) == 25_001
    assert ex.event_types[-1] == "ExecutionFailed"


@pytest.mark.parametrize(
    ("fail", "expected"),
    [
        (
            {"ErrorPath": "$.code"},
            'The ErrorPath field refers to value "7" which is not a valid string: $.code',
        ),
        (
            {"Error": "Bad", "CausePath": "$.detail"},
            'The CausePath field refers to value "{"a":1}" which is not a valid string: $.detail',
        ),
    ],
)
def test_a_fail_path_must_select_a_string(fail: dict, expected: str) -> None:
    # Found by the differential fuzzer: a number went on as the execution's error name.
    machine = load({"StartAt": "F", "States": {"F": {"Type": "Fail", **fail}}})
    execution = execute(machine, {"code": 7, "detail": {"a": 1}})
    assert (execution.status, execution.error) == ("FAILED", "States.Runtime")
    assert execution.cause.endswith(expected)
    assert [event["type"] for event in execution.history][-1] == "ExecutionFailed"


def test_a_fail_path_that_selects_a_string_names_the_error() -> None:
    machine = load(
        {"StartAt": "F", "States": {"F": {"Type": "Fail", "ErrorPath": "$.e", "CausePath": "$.c"}}}
    )
    execution = execute(machine, {"e": "Custom.Error", "c": "why"})
    assert (execution.error, execution.cause) == ("Custom.Error", "why")
