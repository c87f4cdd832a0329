"""Replies recorded from apps built with the official Inngest SDKs (Python inngest 0.5.19 with
Flask, TypeScript inngest 4.24.0 with inngest/node), both in dev mode unless marked "cloud".

Copied from the project's SDK capture notes so the tests do not depend on files outside the
repository. Each reply: HTTP status, response headers, JSON body.
"""

from __future__ import annotations

from typing import Any

PY_REPLIES: dict[str, dict[str, Any]] = {
    "POST first call of three (no memo)": {
        "status": 206,
        "headers": {
            "content-type": "application/json",
            "x-inngest-sdk": "inngest-py:v0.5.19",
            "x-inngest-req-version": "2",
            "x-inngest-framework": "flask",
            "x-inngest-expected-server-kind": "dev",
            "x-inngest-sdk-handled": "true",
        },
        "body": [
            {
                "displayName": "a",
                "id": "86f7e437faa5a7fce15d1ddcb9eaeaea377667b8",
                "name": "a",
                "op": "StepRun",
                "opts": None,
                "userland": {"id": "a", "index": None},
                "data": 1,
            }
        ],
    },
    "POST three with step a memoized": {
        "status": 206,
        "headers": {
            "content-type": "application/json",
            "x-inngest-sdk": "inngest-py:v0.5.19",
            "x-inngest-req-version": "2",
            "x-inngest-framework": "flask",
            "x-inngest-expected-server-kind": "dev",
            "x-inngest-sdk-handled": "true",
        },
        "body": [
            {
                "displayName": "b",
                "id": "e9d71f5ee7c92d6dc9e92ffdad17b8bd49418f98",
                "name": "b",
                "op": "StepRun",
                "opts": None,
                "userland": {"id": "b", "index": None},
                "data": 2,
            }
        ],
    },
    "POST three with a and b memoized -> function result": {
        "status": 200,
        "headers": {
            "content-type": "application/json",
            "x-inngest-sdk": "inngest-py:v0.5.19",
            "x-inngest-req-version": "2",
            "x-inngest-framework": "flask",
            "x-inngest-expected-server-kind": "dev",
            "x-inngest-sdk-handled": "true",
        },
        "body": {"sum": 3},
    },
    "POST three, disable_immediate_execution=true -> StepPlanned": {
        "status": 206,
        "headers": {
            "content-type": "application/json",
            "x-inngest-sdk": "inngest-py:v0.5.19",
            "x-inngest-req-version": "2",
            "x-inngest-framework": "flask",
            "x-inngest-expected-server-kind": "dev",
            "x-inngest-sdk-handled": "true",
        },
        "body": [
            {
                "displayName": "a",
                "id": "86f7e437faa5a7fce15d1ddcb9eaeaea377667b8",
                "name": "a",
                "op": "StepPlanned",
                "opts": None,
                "userland": {"id": "a", "index": None},
                "data": None,
            }
        ],
    },
    "POST three targeted at step b (stepId=hash) with a memoized": {
        "status": 206,
        "headers": {
            "content-type": "application/json",
            "x-inngest-sdk": "inngest-py:v0.5.19",
            "x-inngest-req-version": "2",
            "x-inngest-framework": "flask",
            "x-inngest-expected-server-kind": "dev",
            "x-inngest-sdk-handled": "true",
        },
        "body": [
            {
                "displayName": "b",
                "id": "e9d71f5ee7c92d6dc9e92ffdad17b8bd49418f98",
                "name": "b",
                "op": "StepRun",
                "opts": None,
                "userland": {"id": "b", "index": None},
                "data": 2,
            }
        ],
    },
    "POST ops -> Sleep": {
        "status": 206,
        "headers": {
            "content-type": "application/json",
            "x-inngest-sdk": "inngest-py:v0.5.19",
            "x-inngest-req-version": "2",
            "x-inngest-framework": "flask",
            "x-inngest-expected-server-kind": "dev",
            "x-inngest-sdk-handled": "true",
        },
        "body": [
            {
                "displayName": "nap",
                "id": "c2640f79b4ed481b838ce4ad75330aa3f825d4d9",
                "name": "2026-11-24T00:53:04.446Z",
                "op": "Sleep",
                "opts": None,
                "userland": {"id": "nap", "index": None},
                "data": None,
            }
        ],
    },
    "POST ops, sleep done (memo null) -> WaitForEvent": {
        "status": 206,
        "headers": {
            "content-type": "application/json",
            "x-inngest-sdk": "inngest-py:v0.5.19",
            "x-inngest-req-version": "2",
            "x-inngest-framework": "flask",
            "x-inngest-expected-server-kind": "dev",
            "x-inngest-sdk-handled": "true",
        },
        "body": [
            {
                "displayName": "wait",
                "id": "daaad336276d15594d0e765f96c17cd746bf4971",
                "name": "cap/approve",
                "op": "WaitForEvent",
                "opts": {"if": "async.data.id == event.data.id", "timeout": "1m"},
                "userland": {"id": "wait", "index": None},
                "data": None,
            }
        ],
    },
    "POST ops, wait fulfilled with raw event -> InvokeFunction": {
        "status": 206,
        "headers": {
            "content-type": "application/json",
            "x-inngest-sdk": "inngest-py:v0.5.19",
            "x-inngest-req-version": "2",
            "x-inngest-framework": "flask",
            "x-inngest-expected-server-kind": "dev",
            "x-inngest-sdk-handled": "true",
        },
        "body": [
            {
                "displayName": "call",
                "id": "bc8d8647b02deea0ab3e715c220d041ee78cc19d",
                "name": "call",
                "op": "InvokeFunction",
                "opts": {
                    "function_id": "cap-three",
                    "payload": {"data": {"n": 1}, "v": None},
                    "timeout": None,
                },
                "userland": {"id": "call", "index": None},
                "data": None,
            }
        ],
    },
    "POST ops, invoke result memoized -> send_event runs inline (SDK POSTs /e/)": {
        "status": 206,
        "headers": {
            "content-type": "application/json",
            "x-inngest-sdk": "inngest-py:v0.5.19",
            "x-inngest-req-version": "2",
            "x-inngest-framework": "flask",
            "x-inngest-expected-server-kind": "dev",
            "x-inngest-sdk-handled": "true",
        },
        "body": [
            {
                "displayName": "send",
                "id": "37ed539c0cef13959abd980bebf30f4922f606e3",
                "name": "send",
                "op": "StepRun",
                "opts": None,
                "userland": {"id": "send", "index": None},
                "data": ["01EVENTID00000000000000000"],
            }
        ],
    },
    "POST ops, wait timed out (memo null), invoke failed (memo error)": {
        "status": 500,
        "headers": {
            "content-type": "application/json",
            "x-inngest-sdk": "inngest-py:v0.5.19",
            "x-inngest-req-version": "2",
            "x-inngest-framework": "flask",
            "x-inngest-no-retry": "true",
            "x-inngest-expected-server-kind": "dev",
            "x-inngest-sdk-handled": "true",
        },
        "body": {
            "code": "step_errored",
            "message": "invoked fn failed",
            "name": "Error",
            "stack": None,
        },
    },
    "POST par (parallel group) -> 2 StepPlanned": {
        "status": 206,
        "headers": {
            "content-type": "application/json",
            "x-inngest-sdk": "inngest-py:v0.5.19",
            "x-inngest-req-version": "2",
            "x-inngest-framework": "flask",
            "x-inngest-expected-server-kind": "dev",
            "x-inngest-sdk-handled": "true",
        },
        "body": [
            {
                "displayName": "p1",
                "id": "b78f576611ec06f96af3ca654c22172a5d746c40",
                "name": "p1",
                "op": "StepPlanned",
                "opts": None,
                "userland": {"id": "p1", "index": None},
                "data": None,
            },
            {
                "displayName": "p2",
                "id": "c5fd961c9f737a955a308050062e7a2c34ee67c3",
                "name": "p2",
                "op": "StepPlanned",
                "opts": None,
                "userland": {"id": "p2", "index": None},
                "data": None,
            },
        ],
    },
    "POST par targeted at p2": {
        "status": 206,
        "headers": {
            "content-type": "application/json",
            "x-inngest-sdk": "inngest-py:v0.5.19",
            "x-inngest-req-version": "2",
            "x-inngest-framework": "flask",
            "x-inngest-expected-server-kind": "dev",
            "x-inngest-sdk-handled": "true",
        },
        "body": [
            {
                "displayName": "p2",
                "id": "c5fd961c9f737a955a308050062e7a2c34ee67c3",
                "name": "p2",
                "op": "StepRun",
                "opts": None,
                "userland": {"id": "p2", "index": None},
                "data": "y",
            }
        ],
    },
    "POST par with both memoized -> result": {
        "status": 200,
        "headers": {
            "content-type": "application/json",
            "x-inngest-sdk": "inngest-py:v0.5.19",
            "x-inngest-req-version": "2",
            "x-inngest-framework": "flask",
            "x-inngest-expected-server-kind": "dev",
            "x-inngest-sdk-handled": "true",
        },
        "body": ["x", "y"],
    },
    "POST fail attempt 0 (max_attempts 2) -> StepError": {
        "status": 206,
        "headers": {
            "content-type": "application/json",
            "x-inngest-sdk": "inngest-py:v0.5.19",
            "x-inngest-req-version": "2",
            "x-inngest-framework": "flask",
            "x-inngest-expected-server-kind": "dev",
            "x-inngest-sdk-handled": "true",
        },
        "body": [
            {
                "displayName": "boom",
                "id": "c53d2f1a9a8499bcb477be56c31caa5c76ae60f5",
                "name": "boom",
                "op": "StepError",
                "opts": None,
                "userland": {"id": "boom", "index": None},
                "error": {
                    "code": "unknown",
                    "message": "kaput",
                    "name": "ValueError",
                    "stack": "Traceback "
                    "(most "
                    "recent "
                    "call "
                    "last):\n"
                    "  File "
                    '"app/capture_py.py", '
                    "line 105, "
                    "in "
                    "<lambda>\n"
                    "    "
                    'ctx.step.run("boom", '
                    "lambda: "
                    "(_ for _ "
                    "in "
                    '()).throw(ValueError("kaput")))\n'
                    "                                 "
                    "^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^\n"
                    "  File "
                    '"app/capture_py.py", '
                    "line 105, "
                    "in "
                    "<genexpr>\n"
                    "    "
                    'ctx.step.run("boom", '
                    "lambda: "
                    "(_ for _ "
                    "in "
                    '()).throw(ValueError("kaput")))\n'
                    "ValueError: "
                    "kaput\n",
                },
                "data": None,
            }
        ],
    },
    "POST fail attempt 1 (max_attempts 2) -> StepFailed": {
        "status": 206,
        "headers": {
            "content-type": "application/json",
            "x-inngest-sdk": "inngest-py:v0.5.19",
            "x-inngest-req-version": "2",
            "x-inngest-framework": "flask",
            "x-inngest-expected-server-kind": "dev",
            "x-inngest-sdk-handled": "true",
        },
        "body": [
            {
                "displayName": "boom",
                "id": "c53d2f1a9a8499bcb477be56c31caa5c76ae60f5",
                "name": "boom",
                "op": "StepFailed",
                "opts": None,
                "userland": {"id": "boom", "index": None},
                "error": {
                    "code": "unknown",
                    "message": "kaput",
                    "name": "ValueError",
                    "stack": "Traceback "
                    "(most "
                    "recent "
                    "call "
                    "last):\n"
                    "  File "
                    '"app/capture_py.py", '
                    "line "
                    "105, in "
                    "<lambda>\n"
                    "    "
                    'ctx.step.run("boom", '
                    "lambda: "
                    "(_ for _ "
                    "in "
                    '()).throw(ValueError("kaput")))\n'
                    "                                 "
                    "^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^\n"
                    "  File "
                    '"app/capture_py.py", '
                    "line "
                    "105, in "
                    "<genexpr>\n"
                    "    "
                    'ctx.step.run("boom", '
                    "lambda: "
                    "(_ for _ "
                    "in "
                    '()).throw(ValueError("kaput")))\n'
                    "ValueError: "
                    "kaput\n",
                },
                "data": None,
            }
        ],
    },
    "POST fail, no max_attempts in ctx -> always StepError": {
        "status": 206,
        "headers": {
            "content-type": "application/json",
            "x-inngest-sdk": "inngest-py:v0.5.19",
            "x-inngest-req-version": "2",
            "x-inngest-framework": "flask",
            "x-inngest-expected-server-kind": "dev",
            "x-inngest-sdk-handled": "true",
        },
        "body": [
            {
                "displayName": "boom",
                "id": "c53d2f1a9a8499bcb477be56c31caa5c76ae60f5",
                "name": "boom",
                "op": "StepError",
                "opts": None,
                "userland": {"id": "boom", "index": None},
                "error": {
                    "code": "unknown",
                    "message": "kaput",
                    "name": "ValueError",
                    "stack": "Traceback "
                    "(most "
                    "recent "
                    "call "
                    "last):\n"
                    "  "
                    "File "
                    '"app/capture_py.py", '
                    "line "
                    "105, "
                    "in "
                    "<lambda>\n"
                    "    "
                    'ctx.step.run("boom", '
                    "lambda: "
                    "(_ "
                    "for _ "
                    "in "
                    '()).throw(ValueError("kaput")))\n'
                    "                                 "
                    "^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^\n"
                    "  "
                    "File "
                    '"app/capture_py.py", '
                    "line "
                    "105, "
                    "in "
                    "<genexpr>\n"
                    "    "
                    'ctx.step.run("boom", '
                    "lambda: "
                    "(_ "
                    "for _ "
                    "in "
                    '()).throw(ValueError("kaput")))\n'
                    "ValueError: "
                    "kaput\n",
                },
                "data": None,
            }
        ],
    },
    "POST fail with the step's error memoized -> function error (500, no-retry)": {
        "status": 500,
        "headers": {
            "content-type": "application/json",
            "x-inngest-sdk": "inngest-py:v0.5.19",
            "x-inngest-req-version": "2",
            "x-inngest-framework": "flask",
            "x-inngest-no-retry": "true",
            "x-inngest-expected-server-kind": "dev",
            "x-inngest-sdk-handled": "true",
        },
        "body": {"code": "step_errored", "message": "kaput", "name": "ValueError", "stack": "..."},
    },
    "POST on_failure handler (fnId=cap-fail-failure)": {
        "status": 200,
        "headers": {
            "content-type": "application/json",
            "x-inngest-sdk": "inngest-py:v0.5.19",
            "x-inngest-req-version": "2",
            "x-inngest-framework": "flask",
            "x-inngest-expected-server-kind": "dev",
            "x-inngest-sdk-handled": "true",
        },
        "body": {"saw": "inngest/function.failed"},
    },
    "POST nr -> NonRetriableError": {
        "status": 500,
        "headers": {
            "content-type": "application/json",
            "x-inngest-sdk": "inngest-py:v0.5.19",
            "x-inngest-req-version": "2",
            "x-inngest-framework": "flask",
            "x-inngest-no-retry": "true",
            "x-inngest-expected-server-kind": "dev",
            "x-inngest-sdk-handled": "true",
        },
        "body": {
            "code": "non_retriable_error",
            "message": "stop now",
            "name": "NonRetriableError",
            "stack": "Traceback (most recent call last):\n"
            '  File "app/capture_py.py", line 110, in '
            "nr\n"
            '    raise inngest.NonRetriableError("stop '
            'now")\n'
            "inngest._internal.errors.NonRetriableError: "
            "stop now\n",
        },
    },
    "POST ra -> RetryAfterError": {
        "status": 500,
        "headers": {
            "content-type": "application/json",
            "x-inngest-sdk": "inngest-py:v0.5.19",
            "x-inngest-req-version": "2",
            "x-inngest-framework": "flask",
            "retry-after": "2026-11-24T00:53:32.458Z",
            "x-inngest-expected-server-kind": "dev",
            "x-inngest-sdk-handled": "true",
        },
        "body": {
            "code": "retry_after_error",
            "message": "later",
            "name": "RetryAfterError",
            "stack": "Traceback (most recent call last):\n"
            '  File "app/capture_py.py", line 115, in '
            "ra\n"
            '    raise inngest.RetryAfterError("later", '
            "datetime.timedelta(seconds=30))\n"
            "inngest._internal.errors.RetryAfterError: "
            "later\n",
        },
    },
    "POST dup -> repeated step id 'x'": {
        "status": 206,
        "headers": {
            "content-type": "application/json",
            "x-inngest-sdk": "inngest-py:v0.5.19",
            "x-inngest-req-version": "2",
            "x-inngest-framework": "flask",
            "x-inngest-expected-server-kind": "dev",
            "x-inngest-sdk-handled": "true",
        },
        "body": [
            {
                "displayName": "x",
                "id": "825b938e1bf063c8ae74c6b0689861a0c2c0ae63",
                "name": "x",
                "op": "StepRun",
                "opts": None,
                "userland": {"id": "x", "index": 1},
                "data": None,
            }
        ],
    },
    "POST three with use_api=true (events/steps fetched from API)": {
        "status": 206,
        "headers": {
            "content-type": "application/json",
            "x-inngest-sdk": "inngest-py:v0.5.19",
            "x-inngest-req-version": "2",
            "x-inngest-framework": "flask",
            "x-inngest-expected-server-kind": "dev",
            "x-inngest-sdk-handled": "true",
        },
        "body": [
            {
                "displayName": "a",
                "id": "86f7e437faa5a7fce15d1ddcb9eaeaea377667b8",
                "name": "a",
                "op": "StepRun",
                "opts": None,
                "userland": {"id": "a", "index": None},
                "data": 1,
            }
        ],
    },
    "POST without `events` and use_api=false": {
        "status": 500,
        "headers": {
            "content-type": "application/json",
            "x-inngest-sdk": "inngest-py:v0.5.19",
            "x-inngest-req-version": "2",
            "x-inngest-framework": "flask",
            "x-inngest-expected-server-kind": "dev",
            "x-inngest-sdk-handled": "true",
        },
        "body": {"code": "unknown", "message": "events not in request", "name": "Exception"},
    },
    "POST unknown fnId": {
        "status": 500,
        "headers": {
            "content-type": "application/json",
            "x-inngest-sdk": "inngest-py:v0.5.19",
            "x-inngest-req-version": "2",
            "x-inngest-framework": "flask",
            "x-inngest-expected-server-kind": "dev",
            "x-inngest-sdk-handled": "true",
        },
        "body": {
            "code": "function_not_found",
            "message": "function cap-nope not found",
            "name": "FunctionNotFoundError",
        },
    },
    "POST probe=trust": {
        "status": 200,
        "headers": {
            "content-type": "application/json",
            "x-inngest-sdk": "inngest-py:v0.5.19",
            "x-inngest-req-version": "2",
            "x-inngest-framework": "flask",
            "x-inngest-expected-server-kind": "dev",
            "x-inngest-sdk-handled": "true",
        },
        "body": None,
    },
    "cloud: POST without signature": {
        "status": 401,
        "headers": {"content-type": "application/json", "x-inngest-sdk-handled": "true"},
        "body": {"message": "Unauthorized"},
    },
    "cloud: POST with X-Inngest-Signature t=..&s=HMAC(key_hex_text, JCS(body)+t)": {
        "status": 206,
        "headers": {
            "content-type": "application/json",
            "x-inngest-sdk": "inngest-py:v0.5.19",
            "x-inngest-req-version": "2",
            "x-inngest-framework": "flask",
            "x-inngest-expected-server-kind": "cloud",
            "x-inngest-sdk-handled": "true",
            "x-inngest-signature": "t=1795481583&s=f61bd79a1e4fc2d5e5c135a0c3f8f8481c40180889f807f7fc0617f0de944986",  # noqa: E501
        },
        "body": [
            {
                "displayName": "a",
                "id": "86f7e437faa5a7fce15d1ddcb9eaeaea377667b8",
                "name": "a",
                "op": "StepRun",
                "opts": None,
                "userland": {"id": "a", "index": None},
                "data": 1,
            }
        ],
    },
}

TS_REPLIES: dict[str, dict[str, Any]] = {
    "POST three, first call, no ctx.fn_id (plain async mode)": {
        "status": 206,
        "headers": {
            "content-type": "application/json",
            "x-inngest-sdk": "inngest-js:v4.24.0",
            "x-inngest-req-version": "2",
            "x-inngest-framework": "nodejs",
            "x-inngest-sdk-handled": "true",
        },
        "body": [
            {
                "id": "86f7e437faa5a7fce15d1ddcb9eaeaea377667b8",
                "op": "StepRun",
                "name": "a",
                "opts": {},
                "displayName": "a",
                "userland": {"id": "a"},
                "data": 1,
                "timing": {"a": 1795481650276000000, "b": 0},
            }
        ],
    },
    "POST three, first call, version 0 -> refused": {
        "status": 500,
        "headers": {
            "content-type": "application/json",
            "x-inngest-sdk": "inngest-js:v4.24.0",
            "x-inngest-req-version": "2",
            "x-inngest-framework": "nodejs",
            "x-inngest-sdk-handled": "true",
        },
        "body": {
            "type": "internal",
            "name": "Error",
            "message": "Failed to parse data "
            "from executor Function "
            "execution can't "
            "continue. To fix: Make "
            "sure that your API is "
            "set up to parse "
            "incoming request bodies "
            "as JSON, like "
            "body-parser for "
            "Express. See: "
            "https://expressjs.com/en/resources/middleware/body-parser.html",
            "stack": "Error: Failed to parse "
            "data from executor "
            "Function execution can't "
            "continue. To fix: Make "
            "sure that your API is set "
            "up to parse incoming "
            "request bodies as JSON, "
            "like body-parser for "
            "Express. See: "
            "https://expressjs.com/en/resources/middleware/body-parser.html\n"
            "    at parseFnData "
            "(file://app/node_modules/inngest/helpers/functions.js:78:9)\n"
            "    at "
            "InngestCommHandler.runStep "
            "(file://app/node_modules/inngest/components/InngestCommHandler.js:1142:27)\n"
            "    at "
            "InngestCommHandler.handleAction "
            "(file://app/node_modules/inngest/components/InngestCommHandler.js:899:49)\n"
            "    at "
            "process.processTicksAndRejections "
            "(node:internal/process/task_queues:95:5)\n"
            "    at async "
            "ServerTiming.wrap "
            "(file://app/node_modules/inngest/helpers/ServerTiming.js:64:11)\n"
            "    at async "
            "handleAndPrepare "
            "(file://app/node_modules/inngest/components/InngestCommHandler.js:605:19)\n"
            "    at async innerHandler "
            "(file://app/node_modules/inngest/components/InngestCommHandler.js:653:22)\n"
            "    at async "
            "ServerTiming.wrap "
            "(file://app/node_modules/inngest/helpers/ServerTiming.js:64:11)",
            "__serialized": True,
        },
    },
    "POST three with a memoized as {data}": {
        "status": 206,
        "headers": {
            "content-type": "application/json",
            "x-inngest-sdk": "inngest-js:v4.24.0",
            "x-inngest-req-version": "2",
            "x-inngest-framework": "nodejs",
            "x-inngest-sdk-handled": "true",
        },
        "body": [
            {
                "id": "e9d71f5ee7c92d6dc9e92ffdad17b8bd49418f98",
                "op": "StepRun",
                "name": "b",
                "opts": {},
                "displayName": "b",
                "userland": {"id": "b"},
                "data": 2,
                "timing": {"a": 1795481650293000000, "b": 0},
            }
        ],
    },
    "POST three with a,b memoized -> 200 result": {
        "status": 200,
        "headers": {
            "content-type": "application/json",
            "x-inngest-sdk": "inngest-js:v4.24.0",
            "x-inngest-req-version": "2",
            "x-inngest-framework": "nodejs",
            "x-inngest-sdk-handled": "true",
        },
        "body": {"sum": 3},
    },
    "POST three disable_immediate_execution -> StepPlanned": {
        "status": 206,
        "headers": {
            "content-type": "application/json",
            "x-inngest-sdk": "inngest-js:v4.24.0",
            "x-inngest-req-version": "2",
            "x-inngest-framework": "nodejs",
            "x-inngest-sdk-handled": "true",
        },
        "body": [
            {
                "displayName": "a",
                "op": "StepPlanned",
                "id": "86f7e437faa5a7fce15d1ddcb9eaeaea377667b8",
                "name": "a",
                "opts": {},
                "userland": {"id": "a"},
                "data": None,
            }
        ],
    },
    "POST three targeted at b": {
        "status": 206,
        "headers": {
            "content-type": "application/json",
            "x-inngest-sdk": "inngest-js:v4.24.0",
            "x-inngest-req-version": "2",
            "x-inngest-framework": "nodejs",
            "x-inngest-sdk-handled": "true",
        },
        "body": [
            {
                "id": "e9d71f5ee7c92d6dc9e92ffdad17b8bd49418f98",
                "op": "StepRun",
                "name": "b",
                "opts": {},
                "displayName": "b",
                "userland": {"id": "b"},
                "data": 2,
                "timing": {"a": 1795481650329000000, "b": 0},
            }
        ],
    },
    "POST ops -> Sleep": {
        "status": 206,
        "headers": {
            "content-type": "application/json",
            "x-inngest-sdk": "inngest-js:v4.24.0",
            "x-inngest-req-version": "2",
            "x-inngest-framework": "nodejs",
            "x-inngest-sdk-handled": "true",
        },
        "body": [
            {
                "displayName": "nap",
                "op": "Sleep",
                "id": "c2640f79b4ed481b838ce4ad75330aa3f825d4d9",
                "name": "2s",
                "opts": {},
                "userland": {"id": "nap"},
                "data": None,
            }
        ],
    },
    "POST ops sleep done -> WaitForEvent": {
        "status": 206,
        "headers": {
            "content-type": "application/json",
            "x-inngest-sdk": "inngest-js:v4.24.0",
            "x-inngest-req-version": "2",
            "x-inngest-framework": "nodejs",
            "x-inngest-sdk-handled": "true",
        },
        "body": [
            {
                "displayName": "wait",
                "op": "WaitForEvent",
                "id": "daaad336276d15594d0e765f96c17cd746bf4971",
                "name": "cap/approve",
                "opts": {"timeout": "1m", "if": "async.data.id == event.data.id"},
                "userland": {"id": "wait"},
                "data": None,
            }
        ],
    },
    "POST ops wait fulfilled (raw event) -> InvokeFunction": {
        "status": 206,
        "headers": {
            "content-type": "application/json",
            "x-inngest-sdk": "inngest-js:v4.24.0",
            "x-inngest-req-version": "2",
            "x-inngest-framework": "nodejs",
            "x-inngest-sdk-handled": "true",
        },
        "body": [
            {
                "displayName": "call",
                "op": "InvokeFunction",
                "id": "bc8d8647b02deea0ab3e715c220d041ee78cc19d",
                "opts": {"payload": {"data": {"n": 1}}, "function_id": "cap-three"},
                "userland": {"id": "call"},
                "data": None,
            }
        ],
    },
    "POST ops invoke memoized -> sendEvent": {
        "status": 206,
        "headers": {
            "content-type": "application/json",
            "x-inngest-sdk": "inngest-js:v4.24.0",
            "x-inngest-req-version": "2",
            "x-inngest-framework": "nodejs",
            "x-inngest-sdk-handled": "true",
        },
        "body": [
            {
                "id": "37ed539c0cef13959abd980bebf30f4922f606e3",
                "op": "StepRun",
                "name": "sendEvent",
                "opts": {"type": "step.sendEvent"},
                "displayName": "send",
                "userland": {"id": "send"},
                "data": {"ids": ["01EVENTID00000000000000000"]},
                "timing": {"a": 1795481650367000000, "b": 5000000},
            }
        ],
    },
    "POST ops wait timed out (null), invoke error memo": {
        "status": 400,
        "headers": {
            "content-type": "application/json",
            "x-inngest-sdk": "inngest-js:v4.24.0",
            "x-inngest-req-version": "2",
            "x-inngest-no-retry": "true",
            "x-inngest-framework": "nodejs",
            "x-inngest-sdk-handled": "true",
        },
        "body": {
            "name": "Error",
            "message": "invoked fn failed",
            "stack": "",
            "__serialized": True,
        },
    },
    "POST par -> parallel": {
        "status": 206,
        "headers": {
            "content-type": "application/json",
            "x-inngest-sdk": "inngest-js:v4.24.0",
            "x-inngest-req-version": "2",
            "x-inngest-framework": "nodejs",
            "x-inngest-sdk-handled": "true",
        },
        "body": [
            {
                "displayName": "p1",
                "op": "StepPlanned",
                "id": "b78f576611ec06f96af3ca654c22172a5d746c40",
                "name": "p1",
                "opts": {},
                "userland": {"id": "p1"},
                "data": None,
            },
            {
                "displayName": "p2",
                "op": "StepPlanned",
                "id": "c5fd961c9f737a955a308050062e7a2c34ee67c3",
                "name": "p2",
                "opts": {},
                "userland": {"id": "p2"},
                "data": None,
            },
        ],
    },
    "POST par targeted at p2": {
        "status": 206,
        "headers": {
            "content-type": "application/json",
            "x-inngest-sdk": "inngest-js:v4.24.0",
            "x-inngest-req-version": "2",
            "x-inngest-framework": "nodejs",
            "x-inngest-sdk-handled": "true",
        },
        "body": [
            {
                "id": "c5fd961c9f737a955a308050062e7a2c34ee67c3",
                "op": "StepRun",
                "name": "p2",
                "opts": {},
                "displayName": "p2",
                "userland": {"id": "p2"},
                "data": "y",
                "timing": {"a": 1795481650389000000, "b": 0},
            }
        ],
    },
    "POST par both memoized": {
        "status": 200,
        "headers": {
            "content-type": "application/json",
            "x-inngest-sdk": "inngest-js:v4.24.0",
            "x-inngest-req-version": "2",
            "x-inngest-framework": "nodejs",
            "x-inngest-sdk-handled": "true",
        },
        "body": ["x", "y"],
    },
    "POST fail attempt 0, max_attempts 2": {
        "status": 206,
        "headers": {
            "content-type": "application/json",
            "x-inngest-sdk": "inngest-js:v4.24.0",
            "x-inngest-req-version": "2",
            "x-inngest-no-retry": "false",
            "x-inngest-framework": "nodejs",
            "x-inngest-sdk-handled": "true",
        },
        "body": [
            {
                "id": "c53d2f1a9a8499bcb477be56c31caa5c76ae60f5",
                "op": "StepError",
                "name": "boom",
                "opts": {},
                "displayName": "boom",
                "userland": {"id": "boom"},
                "error": {
                    "name": "Error",
                    "message": "kaput",
                    "stack": "Error: kaput\n"
                    "    at "
                    "file://app/capture_ts.mjs:60:62\n"
                    "    at Object.fn "
                    "(file://app/node_modules/inngest/components/InngestStepTools.js:126:37)\n"
                    "    at step.fn "
                    "(file://app/node_modules/inngest/components/execution/engine.js:1422:35)\n"
                    "    at "
                    "process.processTicksAndRejections "
                    "(node:internal/process/task_queues:95:5)",
                    "__serialized": True,
                },
                "timing": {"a": 1795481650398000000, "b": 0},
                "data": None,
            }
        ],
    },
    "POST fail attempt 1, max_attempts 2": {
        "status": 206,
        "headers": {
            "content-type": "application/json",
            "x-inngest-sdk": "inngest-js:v4.24.0",
            "x-inngest-req-version": "2",
            "x-inngest-no-retry": "true",
            "x-inngest-framework": "nodejs",
            "x-inngest-sdk-handled": "true",
        },
        "body": [
            {
                "id": "c53d2f1a9a8499bcb477be56c31caa5c76ae60f5",
                "op": "StepFailed",
                "name": "boom",
                "opts": {},
                "displayName": "boom",
                "userland": {"id": "boom"},
                "error": {
                    "name": "Error",
                    "message": "kaput",
                    "stack": "Error: kaput\n"
                    "    at "
                    "file://app/capture_ts.mjs:60:62\n"
                    "    at Object.fn "
                    "(file://app/node_modules/inngest/components/InngestStepTools.js:126:37)\n"
                    "    at step.fn "
                    "(file://app/node_modules/inngest/components/execution/engine.js:1422:35)\n"
                    "    at "
                    "process.processTicksAndRejections "
                    "(node:internal/process/task_queues:95:5)",
                    "__serialized": True,
                },
                "timing": {"a": 1795481650403000000, "b": 0},
                "data": {"__serialized": True, "name": "Error", "message": "kaput", "stack": ""},
            }
        ],
    },
    "POST fail, error memoized": {
        "status": 400,
        "headers": {
            "content-type": "application/json",
            "x-inngest-sdk": "inngest-js:v4.24.0",
            "x-inngest-req-version": "2",
            "x-inngest-no-retry": "true",
            "x-inngest-framework": "nodejs",
            "x-inngest-sdk-handled": "true",
        },
        "body": {"name": "Error", "message": "kaput", "stack": "", "__serialized": True},
    },
    "POST onFailure handler (fnId=cap-fail-failure)": {
        "status": 200,
        "headers": {
            "content-type": "application/json",
            "x-inngest-sdk": "inngest-js:v4.24.0",
            "x-inngest-req-version": "2",
            "x-inngest-framework": "nodejs",
            "x-inngest-sdk-handled": "true",
        },
        "body": {"saw": "inngest/function.failed"},
    },
    "POST nr -> NonRetriableError": {
        "status": 400,
        "headers": {
            "content-type": "application/json",
            "x-inngest-sdk": "inngest-js:v4.24.0",
            "x-inngest-req-version": "2",
            "x-inngest-no-retry": "true",
            "x-inngest-framework": "nodejs",
            "x-inngest-sdk-handled": "true",
        },
        "body": {
            "name": "NonRetriableError",
            "message": "stop now",
            "stack": "NonRetriableError: stop now\n"
            "    at InngestExecutionEngine.userFnToRun "
            "(file://app/capture_ts.mjs:62:102)\n"
            "    at innerHandler "
            "(file://app/node_modules/inngest/components/execution/engine.js:1001:16)\n"
            "    at process.processTicksAndRejections "
            "(node:internal/process/task_queues:95:5)",
            "__serialized": True,
        },
    },
    "POST ra -> RetryAfterError": {
        "status": 500,
        "headers": {
            "content-type": "application/json",
            "x-inngest-sdk": "inngest-js:v4.24.0",
            "x-inngest-req-version": "2",
            "x-inngest-no-retry": "false",
            "retry-after": "30",
            "x-inngest-framework": "nodejs",
            "x-inngest-sdk-handled": "true",
        },
        "body": {
            "name": "RetryAfterError",
            "message": "later",
            "stack": "RetryAfterError: later\n"
            "    at InngestExecutionEngine.userFnToRun "
            "(file://app/capture_ts.mjs:63:102)\n"
            "    at innerHandler "
            "(file://app/node_modules/inngest/components/execution/engine.js:1001:16)\n"
            "    at process.processTicksAndRejections "
            "(node:internal/process/task_queues:95:5)",
            "__serialized": True,
        },
    },
    "POST dup -> repeated step id": {
        "status": 206,
        "headers": {
            "content-type": "application/json",
            "x-inngest-sdk": "inngest-js:v4.24.0",
            "x-inngest-req-version": "2",
            "x-inngest-framework": "nodejs",
            "x-inngest-sdk-handled": "true",
        },
        "body": [
            {
                "id": "825b938e1bf063c8ae74c6b0689861a0c2c0ae63",
                "op": "StepRun",
                "name": "x",
                "opts": {},
                "displayName": "x",
                "userland": {"id": "x", "index": 1},
                "data": None,
                "timing": {"a": 1795481650423000000, "b": 0},
            }
        ],
    },
    "POST three with ctx.use_api=true": {
        "status": 400,
        "headers": {
            "content-type": "application/json",
            "x-inngest-sdk": "inngest-js:v4.24.0",
            "x-inngest-req-version": "2",
            "x-inngest-no-retry": "true",
            "x-inngest-framework": "nodejs",
            "x-inngest-sdk-handled": "true",
        },
        "body": {
            "name": "EventValidationError",
            "message": "Event not found in triggers: cap/api",
            "stack": "EventValidationError: Event not found "
            "in triggers: cap/api\n"
            "    at getValidatorForEvent "
            "(file://app/node_modules/inngest/components/triggers/utils.js:92:8)\n"
            "    at validateEvents "
            "(file://app/node_modules/inngest/components/triggers/utils.js:75:21)\n"
            "    at "
            "InngestExecutionEngine.validateEventSchemas "
            "(file://app/node_modules/inngest/components/execution/engine.js:1062:9)\n"
            "    at innerHandler "
            "(file://app/node_modules/inngest/components/execution/engine.js:1000:15)\n"
            "    at "
            "LoggerMiddleware.wrapFunctionHandler "
            "(file://app/node_modules/inngest/components/Inngest.js:700:11)\n"
            "    at chain "
            "(file://app/node_modules/inngest/components/middleware/manager.js:155:22)\n"
            "    at "
            "process.processTicksAndRejections "
            "(node:internal/process/task_queues:95:5)",
            "__serialized": True,
        },
    },
    "POST three WITH ctx.fn_id but no qi_id (checkpointing attempted)": {
        "status": 206,
        "headers": {
            "content-type": "application/json",
            "x-inngest-sdk": "inngest-js:v4.24.0",
            "x-inngest-req-version": "2",
            "x-inngest-framework": "nodejs",
            "x-inngest-sdk-handled": "true",
        },
        "body": [
            {
                "id": "86f7e437faa5a7fce15d1ddcb9eaeaea377667b8",
                "mode": "sync",
                "op": "StepRun",
                "name": "a",
                "displayName": "a",
                "userland": {"id": "a"},
                "opts": {},
                "rawArgs": ["a", None],
                "hashedId": "86f7e437faa5a7fce15d1ddcb9eaeaea377667b8",
                "promise": {},
                "fulfilled": True,
                "hasStepState": True,
                "handled": True,
                "middleware": {
                    "stepInfo": {
                        "hashedId": "86f7e437faa5a7fce15d1ddcb9eaeaea377667b8",
                        "memoized": False,
                        "options": {"id": "a", "name": "a"},
                        "stepType": "run",
                    }
                },
                "memoizationDeferred": {"promise": {}},
                "transformedResultPromise": {},
                "data": 1,
                "timing": {"a": 1795481650433000000, "b": 0},
            }
        ],
    },
    "POST three WITH ctx.fn_id and ctx.qi_id (async checkpointing)": {
        "status": 206,
        "headers": {
            "content-type": "application/json",
            "x-inngest-sdk": "inngest-js:v4.24.0",
            "x-inngest-req-version": "2",
            "x-inngest-framework": "nodejs",
            "x-inngest-sdk-handled": "true",
        },
        "body": [
            {
                "op": "RunComplete",
                "id": "0737c22d3bfae812339732d14d8c7dbd6dc4e09c",
                "data": {"sum": 3},
            }
        ],
    },
    "POST three WITH fn_id+qi_id, a memoized (last step then function end)": {
        "status": 206,
        "headers": {
            "content-type": "application/json",
            "x-inngest-sdk": "inngest-js:v4.24.0",
            "x-inngest-req-version": "2",
            "x-inngest-framework": "nodejs",
            "x-inngest-sdk-handled": "true",
        },
        "body": [
            {
                "op": "RunComplete",
                "id": "0737c22d3bfae812339732d14d8c7dbd6dc4e09c",
                "data": {"sum": 3},
            }
        ],
    },
    "POST unknown fnId": {
        "status": 500,
        "headers": {
            "content-type": "application/json",
            "x-inngest-sdk": "inngest-js:v4.24.0",
            "x-inngest-req-version": "2",
            "x-inngest-framework": "nodejs",
            "x-inngest-sdk-handled": "true",
        },
        "body": {
            "type": "internal",
            "name": "Error",
            "message": 'Function "cap-nope" was not found in this app; is '
            "the app synced correctly?",
            "stack": 'Error: Function "cap-nope" was not found in this '
            "app; is the app synced correctly?\n"
            "    at InngestCommHandler.handleAction "
            "(file://app/node_modules/inngest/components/InngestCommHandler.js:888:25)\n"
            "    at process.processTicksAndRejections "
            "(node:internal/process/task_queues:95:5)\n"
            "    at async ServerTiming.wrap "
            "(file://app/node_modules/inngest/helpers/ServerTiming.js:64:11)\n"
            "    at async handleAndPrepare "
            "(file://app/node_modules/inngest/components/InngestCommHandler.js:605:19)\n"
            "    at async innerHandler "
            "(file://app/node_modules/inngest/components/InngestCommHandler.js:653:22)\n"
            "    at async ServerTiming.wrap "
            "(file://app/node_modules/inngest/helpers/ServerTiming.js:64:11)",
            "__serialized": True,
        },
    },
    "POST ops with an event that matches no trigger": {
        "status": 400,
        "headers": {
            "content-type": "application/json",
            "x-inngest-sdk": "inngest-js:v4.24.0",
            "x-inngest-req-version": "2",
            "x-inngest-no-retry": "true",
            "x-inngest-framework": "nodejs",
            "x-inngest-sdk-handled": "true",
        },
        "body": {
            "name": "EventValidationError",
            "message": "Event not found in triggers: cap/three",
            "stack": "EventValidationError: "
            "Event not found in "
            "triggers: cap/three\n"
            "    at "
            "getValidatorForEvent "
            "(file://app/node_modules/inngest/components/triggers/utils.js:92:8)\n"
            "    at validateEvents "
            "(file://app/node_modules/inngest/components/triggers/utils.js:75:21)\n"
            "    at "
            "InngestExecutionEngine.validateEventSchemas "
            "(file://app/node_modules/inngest/components/execution/engine.js:1062:9)\n"
            "    at innerHandler "
            "(file://app/node_modules/inngest/components/execution/engine.js:1000:15)\n"
            "    at "
            "LoggerMiddleware.wrapFunctionHandler "
            "(file://app/node_modules/inngest/components/Inngest.js:700:11)\n"
            "    at chain "
            "(file://app/node_modules/inngest/components/middleware/manager.js:155:22)\n"
            "    at "
            "process.processTicksAndRejections "
            "(node:internal/process/task_queues:95:5)",
            "__serialized": True,
        },
    },
    "POST three (invoked) with event inngest/function.invoked": {
        "status": 206,
        "headers": {
            "content-type": "application/json",
            "x-inngest-sdk": "inngest-js:v4.24.0",
            "x-inngest-req-version": "2",
            "x-inngest-framework": "nodejs",
            "x-inngest-sdk-handled": "true",
        },
        "body": [
            {
                "id": "86f7e437faa5a7fce15d1ddcb9eaeaea377667b8",
                "op": "StepRun",
                "name": "a",
                "opts": {},
                "displayName": "a",
                "userland": {"id": "a"},
                "data": 1,
                "timing": {"a": 1795481650452000000, "b": 0},
            }
        ],
    },
    "POST ops (cron) with event inngest/scheduled.timer": {
        "status": 206,
        "headers": {
            "content-type": "application/json",
            "x-inngest-sdk": "inngest-js:v4.24.0",
            "x-inngest-req-version": "2",
            "x-inngest-framework": "nodejs",
            "x-inngest-sdk-handled": "true",
        },
        "body": [
            {
                "displayName": "nap",
                "op": "Sleep",
                "id": "c2640f79b4ed481b838ce4ad75330aa3f825d4d9",
                "name": "2s",
                "opts": {},
                "userland": {"id": "nap"},
                "data": None,
            }
        ],
    },
}

PY_REGISTER: dict[str, Any] = {
    "headers": {
        "content-type": "application/json",
        "x-inngest-sdk": "inngest-py:v0.5.19",
        "x-inngest-req-version": "2",
        "x-inngest-framework": "flask",
        "x-inngest-expected-server-kind": "dev",
    },
    "body": {
        "appname": "cap",
        "capabilities": {"connect": "v1", "in_band_sync": "v1", "trust_probe": "v1"},
        "deploy_type": "ping",
        "framework": "flask",
        "functions": [
            {
                "id": "cap-three",
                "name": "three",
                "steps": {
                    "step": {
                        "id": "step",
                        "name": "step",
                        "retries": {"attempts": 2},
                        "runtime": {
                            "type": "http",
                            "url": "http://localhost/api/inngest?fnId=cap-three&stepId=step",
                        },
                    }
                },
                "triggers": [{"event": "cap/three"}],
            },
            {
                "id": "cap-ops",
                "name": "ops",
                "steps": {
                    "step": {
                        "id": "step",
                        "name": "step",
                        "runtime": {
                            "type": "http",
                            "url": "http://localhost/api/inngest?fnId=cap-ops&stepId=step",
                        },
                    }
                },
                "triggers": [
                    {"event": "cap/ops", "expression": "event.data.x > 1"},
                    {"cron": "*/5 * * * *"},
                ],
            },
            {
                "id": "cap-par",
                "name": "par",
                "steps": {
                    "step": {
                        "id": "step",
                        "name": "step",
                        "runtime": {
                            "type": "http",
                            "url": "http://localhost/api/inngest?fnId=cap-par&stepId=step",
                        },
                    }
                },
                "triggers": [{"event": "cap/par"}],
            },
            {
                "id": "cap-fail",
                "name": "fail",
                "steps": {
                    "step": {
                        "id": "step",
                        "name": "step",
                        "retries": {"attempts": 1},
                        "runtime": {
                            "type": "http",
                            "url": "http://localhost/api/inngest?fnId=cap-fail&stepId=step",
                        },
                    }
                },
                "triggers": [{"event": "cap/fail"}],
            },
            {
                "cancel": [],
                "concurrency": [],
                "id": "cap-fail-failure",
                "name": "fail (failure)",
                "steps": {
                    "step": {
                        "id": "step",
                        "name": "step",
                        "retries": {"attempts": 0},
                        "runtime": {
                            "type": "http",
                            "url": "http://localhost/api/inngest?fnId=cap-fail-failure&stepId=step",
                        },
                    }
                },
                "triggers": [
                    {
                        "event": "inngest/function.failed",
                        "expression": "event.data.function_id == 'cap-fail'",
                    }
                ],
            },
            {
                "id": "cap-nr",
                "name": "nr",
                "steps": {
                    "step": {
                        "id": "step",
                        "name": "step",
                        "runtime": {
                            "type": "http",
                            "url": "http://localhost/api/inngest?fnId=cap-nr&stepId=step",
                        },
                    }
                },
                "triggers": [{"event": "cap/nr"}],
            },
            {
                "id": "cap-ra",
                "name": "ra",
                "steps": {
                    "step": {
                        "id": "step",
                        "name": "step",
                        "runtime": {
                            "type": "http",
                            "url": "http://localhost/api/inngest?fnId=cap-ra&stepId=step",
                        },
                    }
                },
                "triggers": [{"event": "cap/ra"}],
            },
            {
                "cancel": [{"event": "cap/cancel", "if": "event.data.id == async.data.id"}],
                "concurrency": [{"key": "event.data.k", "limit": 1}],
                "debounce": {"period": "2s"},
                "id": "cap-dup",
                "idempotency": "event.data.key",
                "name": "dup",
                "rateLimit": {"limit": 1, "period": "10s"},
                "steps": {
                    "step": {
                        "id": "step",
                        "name": "step",
                        "runtime": {
                            "type": "http",
                            "url": "http://localhost/api/inngest?fnId=cap-dup&stepId=step",
                        },
                    }
                },
                "triggers": [{"event": "cap/dup"}],
            },
        ],
        "sdk": "py:v0.5.19",
        "url": "http://localhost/api/inngest",
        "v": "0.1",
    },
}
"""POST /fn/register sent by the Python app (dev mode)."""

PY_REGISTER_CLOUD: dict[str, Any] = {
    "headers": {
        "content-type": "application/json",
        "x-inngest-sdk": "inngest-py:v0.5.19",
        "x-inngest-req-version": "2",
        "x-inngest-framework": "flask",
        "x-inngest-expected-server-kind": "cloud",
        "authorization": "Bearer 9a2db2e23f1504cd056606553ac049c5e718e8f9ce9233876df1a7a1821af885",
    },
    "body": {
        "appname": "cap",
        "capabilities": {"connect": "v1", "in_band_sync": "v1", "trust_probe": "v1"},
        "deploy_type": "ping",
        "framework": "flask",
        "functions": [
            {
                "id": "cap-three",
                "name": "three",
                "steps": {
                    "step": {
                        "id": "step",
                        "name": "step",
                        "runtime": {
                            "type": "http",
                            "url": "http://localhost/api/inngest?fnId=cap-three&stepId=step",
                        },
                    }
                },
                "triggers": [{"event": "cap/three"}],
            }
        ],
        "sdk": "py:v0.5.19",
        "url": "http://localhost/api/inngest",
        "v": "0.1",
    },
}
"""POST /fn/register sent by the Python app in cloud mode (hashed key in Authorization)."""

TS_REGISTER: dict[str, Any] = {
    "headers": {
        "x-inngest-sdk": "inngest-js:v4.24.0",
        "x-inngest-sdk-handled": "true",
        "x-inngest-framework": "nodejs",
        "x-inngest-expected-server-kind": "dev",
        "x-inngest-sync-kind": "out_of_band",
        "authorization": "Bearer undefined",
    },
    "body": {
        "url": "http://127.0.0.1:36521/api/inngest",
        "deployType": "ping",
        "framework": "nodejs",
        "appName": "cap",
        "functions": [
            {
                "id": "cap-three",
                "name": "three",
                "triggers": [{"event": "cap/three"}],
                "steps": {
                    "step": {
                        "id": "step",
                        "name": "step",
                        "runtime": {
                            "type": "http",
                            "url": "http://127.0.0.1:36521/api/inngest?fnId=cap-three&stepId=step",
                        },
                        "retries": {"attempts": 2},
                    }
                },
            },
            {
                "id": "cap-ops",
                "name": "ops",
                "triggers": [
                    {"event": "cap/ops", "expression": "event.data.x > 1"},
                    {"cron": "*/5 * * * *"},
                ],
                "steps": {
                    "step": {
                        "id": "step",
                        "name": "step",
                        "runtime": {
                            "type": "http",
                            "url": "http://127.0.0.1:36521/api/inngest?fnId=cap-ops&stepId=step",
                        },
                    }
                },
            },
            {
                "id": "cap-par",
                "name": "par",
                "triggers": [{"event": "cap/par"}],
                "steps": {
                    "step": {
                        "id": "step",
                        "name": "step",
                        "runtime": {
                            "type": "http",
                            "url": "http://127.0.0.1:36521/api/inngest?fnId=cap-par&stepId=step",
                        },
                    }
                },
            },
            {
                "id": "cap-fail",
                "name": "fail",
                "triggers": [{"event": "cap/fail"}],
                "steps": {
                    "step": {
                        "id": "step",
                        "name": "step",
                        "runtime": {
                            "type": "http",
                            "url": "http://127.0.0.1:36521/api/inngest?fnId=cap-fail&stepId=step",
                        },
                        "retries": {"attempts": 1},
                    }
                },
            },
            {
                "id": "cap-fail-failure",
                "name": "fail (failure)",
                "triggers": [
                    {
                        "event": "inngest/function.failed",
                        "expression": "event.data.function_id == 'cap-fail'",
                    }
                ],
                "steps": {
                    "step": {
                        "id": "step",
                        "name": "step",
                        "runtime": {
                            "type": "http",
                            "url": "http://127.0.0.1:36521/api/inngest?fnId=cap-fail-failure&stepId=step",
                        },
                        "retries": {"attempts": 1},
                    }
                },
            },
            {
                "id": "cap-nr",
                "name": "nr",
                "triggers": [{"event": "cap/nr"}],
                "steps": {
                    "step": {
                        "id": "step",
                        "name": "step",
                        "runtime": {
                            "type": "http",
                            "url": "http://127.0.0.1:36521/api/inngest?fnId=cap-nr&stepId=step",
                        },
                    }
                },
            },
            {
                "id": "cap-ra",
                "name": "ra",
                "triggers": [{"event": "cap/ra"}],
                "steps": {
                    "step": {
                        "id": "step",
                        "name": "step",
                        "runtime": {
                            "type": "http",
                            "url": "http://127.0.0.1:36521/api/inngest?fnId=cap-ra&stepId=step",
                        },
                    }
                },
            },
            {
                "id": "cap-dup",
                "name": "dup",
                "triggers": [{"event": "cap/dup"}],
                "steps": {
                    "step": {
                        "id": "step",
                        "name": "step",
                        "runtime": {
                            "type": "http",
                            "url": "http://127.0.0.1:36521/api/inngest?fnId=cap-dup&stepId=step",
                        },
                    }
                },
                "idempotency": "event.data.key",
                "rateLimit": {"limit": 1, "period": "10s"},
                "concurrency": {"limit": 1, "key": "event.data.k"},
                "debounce": {"period": "2s"},
                "cancel": [{"event": "cap/cancel", "if": "event.data.id == async.data.id"}],
            },
        ],
        "sdk": "js:v4.24.0",
        "v": "0.1",
        "capabilities": {"trust_probe": "v1", "connect": "v1"},
        "featureObservations": {
            "aiMetadataExtraction": {
                "readinessReason": "AI_METADATA_EXTRACTION_READINESS_REASON_OTEL_PROVIDER_MISSING",
                "otelSetup": {
                    "path": "OTEL_SETUP_PATH_EXTEND_EXISTING_PROVIDER",
                    "failure": "OTEL_SETUP_FAILURE_NO_PROVIDER",
                },
            },
            "extendedTraces": {
                "readinessReason": "EXTENDED_TRACES_READINESS_REASON_NOT_ENABLED_BY_USER",
                "config": {},
            },
            "sendEvents": {
                "readinessReason": "SEND_EVENTS_READINESS_REASON_READY",
                "config": {"eventApiOriginOverrideConfigured": True},
            },
        },
    },
}
"""POST /fn/register sent by the TypeScript app (dev mode)."""

CLOUD_SIGNING_KEY = "signkey-test-" + "ab" * 32
"""The key the cloud-mode capture ran with (its hashed form is in PY_REGISTER_CLOUD)."""
