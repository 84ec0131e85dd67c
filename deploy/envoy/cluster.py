"""Sets what deploy/envoy/render derives for the supportdesk cluster and its retries (reads
Envoy's configuration on stdin, writes it to stdout; each substitution must hit, or it fails):

- the instances: the one `socket_address` of the cluster's `lb_endpoints` becomes one endpoint
  per address of UPSTREAM_ADDRESSES (argument 1: comma-separated host:port);
- the health-check interval (and its no-traffic interval), the lines marked
  `# health-check interval`: SHUTDOWN_DELAY_MS / 3 (argument 2, milliseconds), so that two failed
  checks (the unhealthy threshold) fit in the drain delay with one interval to spare;
- the retry routes' per-try timeout (`per_try_timeout: 5s`): a third of the route deadline
  (argument 3, seconds), so a try that hangs leaves time for two more;
- the long streams' cluster (supportdesk-streams): its circuit breaker's `max_requests`,
  STREAM_INSTANCES (argument 9) times (WATCH_MAX_STREAMS_PER_INSTANCE +
  EXPORT_MAX_CONCURRENT_PER_INSTANCE) (arguments 4 and 5), what the instances admit together; ExportTickets' route deadline,
  EXPORT_MAX_DURATION_SECS + 30 s (argument 7); WatchEvents' route deadline,
  WATCH_MAX_DURATION_SECS + 30 s (argument 6), and its idle timeout, three heartbeats
  (3 x WATCH_HEARTBEAT_SECS, argument 8). Each a little above what the service does by itself:
  the service ends its streams first, with a status; Envoy's bounds only catch an instance that
  did not.
"""

# How far above the service's own longest stream Envoy's deadline for it lies.
STREAM_DEADLINE_MARGIN_SECS = 30

import re
import sys


def seconds(millis):
    return f"{millis // 1000}.{millis % 1000:03d}s"


def substitute(text, pattern, replacement, expected):
    text, count = re.subn(pattern, replacement, text, flags=re.M)
    if count != expected:
        sys.exit(f"deploy/envoy/cluster.py: the template has {count} lines matching {pattern!r}, not {expected}")
    return text


def main(
    addresses,
    shutdown_delay_ms,
    route_timeout_secs,
    watch_streams,
    export_streams,
    watch_duration_secs,
    export_duration_secs,
    watch_heartbeat_secs,
    stream_instances,
):
    text = sys.stdin.read()

    endpoint = re.compile(
        r"^( *)- endpoint:\n\1    address:\n\1      socket_address: \{ address: 127\.0\.0\.1, port_value: 50051 \}\n",
        re.M,
    )
    found = endpoint.findall(text)
    if len(found) != 1:
        sys.exit(f"deploy/envoy/cluster.py: the template has {len(found)} supportdesk endpoints, not 1")
    indent = found[0]
    entries = []
    for address in addresses:
        host, port = address.rsplit(":", 1)
        entries.append(
            f"{indent}- endpoint:\n{indent}    address:\n"
            f"{indent}      socket_address: {{ address: {host}, port_value: {port} }}\n"
        )
    text = endpoint.sub(lambda _: "".join(entries), text)

    interval = seconds(max(shutdown_delay_ms // 3, 1))
    text, count = re.subn(
        r"^([ -]*[a-z_]+: )1s( +# health-check interval)", rf"\g<1>{interval}\2", text, flags=re.M
    )
    if count != 2:
        sys.exit(f"deploy/envoy/cluster.py: the template has {count} health-check interval lines, not 2")

    per_try = seconds(max(route_timeout_secs * 1000 // 3, 1))
    text = text.replace("per_try_timeout: 5s", f"per_try_timeout: {per_try}")

    streams = stream_instances * (watch_streams + export_streams)
    text = substitute(
        text, r"(max_requests: )103( +# long streams in flight)", rf"\g<1>{streams}\2", 1
    )
    export_deadline = export_duration_secs + STREAM_DEADLINE_MARGIN_SECS
    text = substitute(
        text, r"(timeout: )630s( +# export route deadline)", rf"\g<1>{export_deadline}s\2", 2
    )
    watch_deadline = watch_duration_secs + STREAM_DEADLINE_MARGIN_SECS
    text = substitute(
        text, r"(timeout: )3630s( +# watch route deadline)", rf"\g<1>{watch_deadline}s\2", 2
    )
    text = substitute(
        text,
        r"(idle_timeout: )45s( +# watch idle timeout)",
        rf"\g<1>{3 * watch_heartbeat_secs}s\2",
        1,
    )
    sys.stdout.write(text)


if __name__ == "__main__":
    main(sys.argv[1].split(","), *(int(argument) for argument in sys.argv[2:11]))
