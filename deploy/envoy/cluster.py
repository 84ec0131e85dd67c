"""Sets what deploy/envoy/render derives for the supportdesk cluster and its retries (reads
Envoy's configuration on stdin, writes it to stdout; each substitution must hit, or it fails):

- the instances: the one `socket_address` of the cluster's `lb_endpoints` becomes one endpoint
  per address of UPSTREAM_ADDRESSES (argument 1: comma-separated host:port);
- the health-check interval (and its no-traffic interval), the lines marked
  `# health-check interval`: SHUTDOWN_DELAY_MS / 3 (argument 2, milliseconds), so that two failed
  checks (the unhealthy threshold) fit in the drain delay with one interval to spare;
- the retry routes' per-try timeout (`per_try_timeout: 5s`): a third of the route deadline
  (argument 3, seconds), so a try that hangs leaves time for two more.
"""

import re
import sys


def seconds(millis):
    return f"{millis // 1000}.{millis % 1000:03d}s"


def main(addresses, shutdown_delay_ms, route_timeout_secs):
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
    sys.stdout.write(text)


if __name__ == "__main__":
    main(sys.argv[1].split(","), int(sys.argv[2]), int(sys.argv[3]))
