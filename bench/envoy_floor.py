"""The floor of REST through Envoy (bench/rest.sh): a rendered Envoy configuration (stdin) cut to
the gRPC-JSON transcoder and the router, with no access log and no local-reply rewriting; the
routes, clusters and listeners stay as they are. Writes the result to stdout."""

import sys

import yaml

KEPT_FILTERS = {"envoy.filters.http.grpc_json_transcoder", "envoy.filters.http.router"}


def without_removed_filters(per_filter):
    return {name: config for name, config in per_filter.items() if name in KEPT_FILTERS}


def main():
    config = yaml.safe_load(sys.stdin)
    managers = 0
    for listener in config["static_resources"]["listeners"]:
        for chain in listener["filter_chains"]:
            for network_filter in chain["filters"]:
                if network_filter["name"] != "envoy.filters.network.http_connection_manager":
                    continue
                manager = network_filter["typed_config"]
                managers += 1
                kept = [f for f in manager["http_filters"] if f["name"] in KEPT_FILTERS]
                if [f["name"] for f in kept] != sorted(KEPT_FILTERS):
                    sys.exit("envoy_floor.py: the transcoder and the router are not both in the chain")
                manager["http_filters"] = kept
                manager.pop("access_log", None)
                manager.pop("local_reply_config", None)
                for host in manager["route_config"]["virtual_hosts"]:
                    if "typed_per_filter_config" in host:
                        host["typed_per_filter_config"] = without_removed_filters(host["typed_per_filter_config"])
                    for route in host["routes"]:
                        if "typed_per_filter_config" in route:
                            route["typed_per_filter_config"] = without_removed_filters(route["typed_per_filter_config"])
    if managers != 1:
        sys.exit(f"envoy_floor.py: expected one HTTP connection manager, found {managers}")
    yaml.safe_dump(config, sys.stdout, sort_keys=False)


if __name__ == "__main__":
    main()
