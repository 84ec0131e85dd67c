"""A small OTLP/gRPC trace receiver for the traces tests (tests/api/support/otlp.rs).

Serves opentelemetry.proto.collector.trace.v1.TraceService on 127.0.0.1 (a free port, printed
on the first line of stdout once serving) and appends every span it receives to the file named
by its one argument, one JSON object a line, a whole export batch in one write.

Needs grpcio and opentelemetry-proto (deploy/local/setup installs both; OTLP_PYTHON_BIN).
"""

import json
import sys
import threading
from concurrent import futures

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc


def plain(value):
    """An AnyValue as JSON: strings, numbers and booleans as they are, the rest as text."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    inner = getattr(value, kind)
    if kind in ("string_value", "bool_value", "int_value", "double_value"):
        return inner
    return str(inner)


class Receiver(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, path):
        self.path = path
        self.lock = threading.Lock()

    def Export(self, request, context):
        lines = []
        for resource_spans in request.resource_spans:
            resource = {a.key: plain(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    lines.append(json.dumps({
                        "trace_id": span.trace_id.hex(),
                        "span_id": span.span_id.hex(),
                        "parent_span_id": span.parent_span_id.hex(),
                        "name": span.name,
                        "kind": span.kind,
                        "status": span.status.code,
                        "service": resource.get("service.name"),
                        "attributes": {a.key: plain(a.value) for a in span.attributes},
                        "events": [event.name for event in span.events],
                    }) + "\n")
        with self.lock, open(self.path, "a", encoding="utf-8") as out:
            out.write("".join(lines))
        return trace_service_pb2.ExportTraceServiceResponse()


def main():
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Receiver(sys.argv[1]), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(port, flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
