"""Variants of a rendered Envoy configuration for bench/rest.sh: reads it on stdin, writes the
variant to stdout. Routes, clusters and listeners stay as they are.

  envoy_variant.py --floor              only the gRPC-JSON transcoder and the router, no access
                                        log, no local-reply rewriting: the floor of REST
  envoy_variant.py --without lua ...    the configuration without those parts (what each costs):
                                        lua, buffer, cors, compressor, grpc_web, header_mutation,
                                        header_to_metadata (HTTP filters),
                                        access_log, and plain_get_routes: the routes on which a
                                        plain GET skips the Lua filter and the buffer
                                        (deploy/envoy/rest_routes.py), so that every GET takes
                                        both, as before those routes
  envoy_variant.py --no-stats           the configuration with every statistic rejected
                                        (stats_matcher reject_all): what Envoy's per-request
                                        counters and histograms cost
"""

import argparse
import sys

import yaml

FILTERS = {
    "lua": "envoy.filters.http.lua",
    "buffer": "envoy.filters.http.buffer",
    "cors": "envoy.filters.http.cors",
    "compressor": "envoy.filters.http.compressor",
    "grpc_web": "envoy.filters.http.grpc_web",
    "header_mutation": "envoy.filters.http.header_mutation",
    "header_to_metadata": "envoy.filters.http.header_to_metadata",
}
FLOOR = {"envoy.filters.http.grpc_json_transcoder", "envoy.filters.http.router"}


def only(per_filter, kept):
    return {name: config for name, config in per_filter.items() if name in kept}


def skips_lua(route):
    """A plain GET route: one on which the Lua filter is disabled and that is matched by regex."""
    lua = route.get("typed_per_filter_config", {}).get(FILTERS["lua"], {})
    return "safe_regex" in route.get("match", {}) and lua.get("disabled") is True


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--floor", action="store_true")
    parser.add_argument("--no-stats", action="store_true")
    parser.add_argument(
        "--without", nargs="+", default=[], choices=sorted([*FILTERS, "access_log", "plain_get_routes"])
    )
    args = parser.parse_args()
    config = yaml.safe_load(sys.stdin)
    if args.no_stats:
        config.setdefault("stats_config", {})["stats_matcher"] = {"reject_all": True}
    managers = 0
    for listener in config["static_resources"]["listeners"]:
        for chain in listener["filter_chains"]:
            for network_filter in chain["filters"]:
                if network_filter["name"] != "envoy.filters.network.http_connection_manager":
                    continue
                manager = network_filter["typed_config"]
                managers += 1
                present = {f["name"] for f in manager["http_filters"]}
                if args.floor:
                    kept = FLOOR
                else:
                    kept = present - {FILTERS[name] for name in args.without if name in FILTERS}
                missing = (FLOOR | {FILTERS[n] for n in args.without if n in FILTERS}) - present
                if missing:
                    sys.exit(f"envoy_variant.py: not in the chain: {sorted(missing)}")
                manager["http_filters"] = [f for f in manager["http_filters"] if f["name"] in kept]
                if args.floor or "access_log" in args.without:
                    manager.pop("access_log", None)
                if args.floor:
                    manager.pop("local_reply_config", None)
                for host in manager["route_config"]["virtual_hosts"]:
                    if "plain_get_routes" in args.without:
                        before = len(host["routes"])
                        host["routes"] = [r for r in host["routes"] if not skips_lua(r)]
                        if len(host["routes"]) == before:
                            sys.exit("envoy_variant.py: no plain GET route to leave out")
                    for holder in [host, *host["routes"]]:
                        if "typed_per_filter_config" in holder:
                            holder["typed_per_filter_config"] = only(holder["typed_per_filter_config"], kept)
    if managers != 1:
        sys.exit(f"envoy_variant.py: expected one HTTP connection manager, found {managers}")
    yaml.safe_dump(config, sys.stdout, sort_keys=False)


if __name__ == "__main__":
    main()
