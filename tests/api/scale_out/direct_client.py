"""A direct gRPC client of the instances, configured as docs/deployment.md ("Direct gRPC
clients") recommends: grpcio over every instance's address, with the service config
`supportdesk retry-rule --service-config` prints (round robin, client-side health checking, a
retry policy for UNAVAILABLE on the RETRY_SAFE methods, retry throttling).

Arguments: the addresses (host:port,host:port,...), the service config file, an access token, a
ticket id, and a stop file. Four threads call GetTicket on the ticket until the stop file
exists; then one JSON line is printed: {"succeeded": n, "failures": [[code, details], ...]}.
"ready" is printed once the first call has succeeded.
"""

import json
import os
import sys
import threading
import time

import grpc


def main(addresses, service_config, token, ticket_id, stop_file):
    with open(service_config, encoding="utf-8") as config:
        options = [
            ("grpc.service_config", config.read()),
            ("grpc.enable_retries", 1),
            # An `ipv4:` list's default authority is the whole list, commas included, which the
            # service's HTTP/2 stack refuses (RST_STREAM PROTOCOL_ERROR): name one.
            ("grpc.default_authority", "supportdesk"),
        ]
    channel = grpc.insecure_channel("ipv4:" + addresses, options=options)
    get_ticket = channel.unary_unary("/supportdesk.v1.TicketService/GetTicket")
    # GetTicketRequest{id = 1: ticket_id}, encoded by hand: no generated code needed.
    encoded_id = ticket_id.encode()
    request = b"\x0a" + bytes([len(encoded_id)]) + encoded_id
    metadata = (("authorization", "Bearer " + token),)
    lock = threading.Lock()
    outcome = {"succeeded": 0, "failures": []}
    ready = threading.Event()

    def call_until_stopped():
        while not os.path.exists(stop_file):
            try:
                get_ticket(request, metadata=metadata, timeout=10)
                with lock:
                    outcome["succeeded"] += 1
                ready.set()
            except grpc.RpcError as error:
                with lock:
                    outcome["failures"].append([error.code().name, error.details()])
            time.sleep(0.01)

    threads = [threading.Thread(target=call_until_stopped) for _ in range(4)]
    for thread in threads:
        thread.start()
    if ready.wait(60):
        print("ready", flush=True)
    for thread in threads:
        thread.join()
    print(json.dumps(outcome), flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:6])
