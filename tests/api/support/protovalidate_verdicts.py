"""What a Python client checking requests with protovalidate (PyPI `protovalidate`) says of each case.

Reads the service's descriptor set (argv[1]) and JSON lines on standard input, each
{"message": full message name, "request": base64 of the request's bytes}; builds the message
classes from the descriptor set (no generated code), validates each request, and prints one JSON
line per case: {"violations": [field paths, `statuses[0]` for an item]}.

Needs protovalidate and protobuf (deploy/local/setup installs both; PROTOVALIDATE_PYTHON_BIN).
"""

import base64
import json
import sys

import protovalidate
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory


def field_path(violation) -> str:
    parts = []
    for element in violation.proto.field.elements:
        part = element.field_name
        subscript = element.subscript
        if subscript is not None and subscript.field == "index":
            part += f"[{subscript.value}]"
        parts.append(part)
    return ".".join(parts)


def main() -> None:
    with open(sys.argv[1], "rb") as descriptors:
        files = descriptor_pb2.FileDescriptorSet.FromString(descriptors.read()).file
    classes = message_factory.GetMessages(list(files), pool=descriptor_pool.DescriptorPool())
    for line in sys.stdin:
        case = json.loads(line)
        message = classes[case["message"]].FromString(base64.b64decode(case["request"]))
        violations = [field_path(violation) for violation in protovalidate.collect_violations(message)]
        print(json.dumps({"violations": violations}), flush=True)


if __name__ == "__main__":
    main()
