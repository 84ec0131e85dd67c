"""Loaded by schemathesis before a run (SCHEMATHESIS_HOOKS, set by fuzzing.rs): one parse at a time.

CPython 3.11 counts the depth of the tree `ast.parse` builds in a counter shared by every thread
(fixed in later releases, python/cpython#106905). When a collection during one thread's parse runs
Python code and lets the other thread parse too, the counts mix and the parse fails with
"SystemError: AST constructor recursion depth mismatch". Hypothesis parses the source of the
lambdas in schemathesis's strategies to describe them, and the run uses two workers, so the fuzz
run failed now and then with that error against an operation that had answered correctly.
Serializing `ast.parse` takes the race away; the parses are few and cached, so nothing is slower.
"""

import ast
import threading

_parse_one_at_a_time = threading.RLock()
_parse = ast.parse


def _serialized_parse(*args, **kwargs):
    with _parse_one_at_a_time:
        return _parse(*args, **kwargs)


ast.parse = _serialized_parse
