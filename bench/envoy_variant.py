"""Variants of a rendered Envoy configuration for bench/rest.sh: reads it on stdin, writes the
variant to stdout. Routes, clusters and listeners stay as they are.

  envoy_variant.py --floor              only the gRPC-JSON transcoder and the router, no access
                                        log, no local-reply rewriting: the floor of REST
  envoy_variant.py --without lua ...    the configuration without those parts (what each costs):
                                        lua, buffer, cors, compressor, grpc_web, header_mutation,
                                        header_to_metadata (HTTP filters),
                                        access_log, and plain_get_routes: the routes on which a
                                        plain GET skips the Lua filter and the buffer
                                        (src/wire/envoy/rest_routes.rs), so that every GET takes
                                        both, as before those routes
  envoy_variant.py --no-stats           the configuration with every statistic rejected
                                        (stats_matcher reject_all): what Envoy's per-request
                                        counters and histograms cost
  envoy_variant.py --routes-of-get-ticket
                                        only the routes GET one ticket takes (its plain GET
                                        route, GetTicket's gRPC route) and the catch-all: what
                                        matching the rest of the table costs that GET
  envoy_variant.py --route-a-path       the plain GET routes as they were before they were
                                        joined (src/wire/envoy/rest_routes.rs): one route a path,
                                        after the gRPC routes, so that a plain GET tries about a
                                        hundred routes before its own
  envoy_variant.py --runtime KEY=VALUE  the configuration with that runtime value set (e.g.
                                        envoy.reloadable_features.http2_use_oghttp2=false)
  envoy_variant.py --keep-incoming-route
                                        the transcoder keeps the route the REST request matched
                                        (match_incoming_request_route) instead of matching again
                                        on the gRPC path: what the second match costs
  envoy_variant.py --set PART.KEY=VALUE one setting of a part set to a YAML value, and
  envoy_variant.py --unset PART.KEY     one left out (Envoy's default), each in one of the
                                        parts hcm (the REST listener's connection manager),
                                        transcoder, router, cluster (the service's) and
                                        upstream_http2 (its HTTP/2 options); KEY may
                                        be a dotted path (e.g. --set router.dynamic_stats=false,
                                        --unset hcm.stream_idle_timeout): what one setting costs
"""

import argparse
import copy
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


def route_a_path(routes):
    """The plain GET routes split into one route per alternative of their regex, moved to just
    before the catch-all (the last route), where they were before."""
    plain = [route for route in routes if skips_lua(route)]
    if not plain:
        sys.exit("envoy_variant.py: no plain GET route to split")
    split = []
    for route in plain:
        for alternative in route["match"]["safe_regex"]["regex"].split("|"):
            one = copy.deepcopy(route)
            one["match"]["safe_regex"]["regex"] = alternative
            split.append(one)
    # In the order of their paths, as rest_routes.py wrote them then.
    split.sort(key=lambda route: route["match"]["safe_regex"]["regex"].replace("\\", ""))
    others = [route for route in routes if not skips_lua(route)]
    return others[:-1] + split + others[-1:]


def takes_get_ticket(route):
    """A route GET one ticket takes: its plain GET route, GetTicket's gRPC route, the catch-all."""
    match = route.get("match", {})
    return (
        "/v1/tickets/[^/:]+" in match.get("safe_regex", {}).get("regex", "").split("|")
        or match.get("path") == "/supportdesk.v1.TicketService/GetTicket"
        or match.get("prefix") == "/"
    )


def settings_of(config, manager):
    """The parts --set and --unset name, each the mapping its settings are in."""
    filters = {f["name"]: f.get("typed_config", {}) for f in manager["http_filters"]}
    clusters = [c for c in config["static_resources"]["clusters"] if c["name"] == "supportdesk"]
    cluster = clusters[0] if clusters else {}
    protocol = cluster.get("typed_extension_protocol_options", {}).get(
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions", {}
    )
    return {
        "hcm": manager,
        "transcoder": filters.get("envoy.filters.http.grpc_json_transcoder"),
        "router": filters.get("envoy.filters.http.router"),
        "cluster": cluster or None,
        "upstream_http2": protocol.get("explicit_http_config", {}).get("http2_protocol_options"),
    }


def change_setting(parts, setting, value=None, unset=False):
    """Sets PART.KEY (a dotted path) to a YAML value, or removes it."""
    part, _, path = setting.partition(".")
    holder = parts.get(part)
    if holder is None or not path:
        sys.exit(f"envoy_variant.py: {setting}: no such part (hcm, transcoder, router, cluster, upstream_http2)")
    *parents, key = path.split(".")
    for parent in parents:
        holder = holder.setdefault(parent, {})
    if unset:
        if key not in holder:
            sys.exit(f"envoy_variant.py: {setting} is not set, so it cannot be left out")
        del holder[key]
    else:
        holder[key] = yaml.safe_load(value)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--floor", action="store_true")
    parser.add_argument("--no-stats", action="store_true")
    parser.add_argument("--routes-of-get-ticket", action="store_true")
    parser.add_argument("--keep-incoming-route", action="store_true")
    parser.add_argument("--route-a-path", action="store_true")
    parser.add_argument("--runtime", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--set", action="append", default=[], metavar="PART.KEY=VALUE")
    parser.add_argument("--unset", action="append", default=[], metavar="PART.KEY")
    parser.add_argument(
        "--without", nargs="+", default=[], choices=sorted([*FILTERS, "access_log", "plain_get_routes"])
    )
    args = parser.parse_args()
    config = yaml.safe_load(sys.stdin)
    if args.no_stats:
        config.setdefault("stats_config", {})["stats_matcher"] = {"reject_all": True}
    for setting in args.runtime:
        key, _, value = setting.partition("=")
        layer = config["layered_runtime"]["layers"][0]["static_layer"]
        layer[key] = {"true": True, "false": False}.get(value, value)
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
                parts = settings_of(config, manager)
                for setting in args.set:
                    name, _, value = setting.partition("=")
                    change_setting(parts, name, value)
                for setting in args.unset:
                    change_setting(parts, setting, unset=True)
                if args.keep_incoming_route:
                    for http_filter in manager["http_filters"]:
                        if http_filter["name"] == "envoy.filters.http.grpc_json_transcoder":
                            http_filter["typed_config"]["match_incoming_request_route"] = True
                for host in manager["route_config"]["virtual_hosts"]:
                    if args.route_a_path:
                        host["routes"] = route_a_path(host["routes"])
                    if args.routes_of_get_ticket:
                        host["routes"] = [r for r in host["routes"] if takes_get_ticket(r)]
                        if len(host["routes"]) != 3:
                            sys.exit("envoy_variant.py: GET one ticket's routes not found")
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
