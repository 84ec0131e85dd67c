#!/usr/bin/env bash
# envoy_config: the Envoy configuration a bench runs, made from the one users run. Sourced by
# bench/run (and the suites it sources) and bench/instructions, after deploy/local/lib.sh (sd_die)
# and with $root set to the repository's root; it does nothing by itself.
# shellcheck shell=bash

# Envoy from the production config (or TEMPLATE: one `supportdesk envoy-config` wrote) with only the
# ports, the descriptor and (for hello) the services list substituted, and the upstream's port
# unless BACKEND is `-` (a rendered config names its upstreams); each substitution must match
# exactly once. Access log to /dev/null, unless ENVOY_ACCESS_LOG=kept (on stdout, as users run
# it) or ENVOY_ACCESS_LOG=none (a configuration without one).
envoy_config() {
  local listen=$1 admin=$2 backend=$3 descriptor=$4 services=$5 out=$6
  local template=${7:-$root/deploy/envoy/envoy.yaml}
  local config
  config=$(<"$template")
  local -a pairs=(
    "port_value: 8080" "port_value: $listen"
    "port_value: 9901" "port_value: $admin"
    "proto_descriptor: deploy/envoy/supportdesk.pb" "proto_descriptor: $descriptor"
  )
  if [[ ${ENVOY_ACCESS_LOG:-null} == null ]]; then
    pairs+=("envoy.access_loggers.stdout" "envoy.access_loggers.file")
  fi
  # ENVOY_SERVICE_TIME=shown: answers carry x-envoy-upstream-service-time again, which the
  # "one at a time" REST rows read (the service's time as Envoy saw it); users' Envoy hides it.
  if [[ ${ENVOY_SERVICE_TIME:-hidden} == shown ]]; then
    pairs+=("suppress_envoy_headers: true" "suppress_envoy_headers: false")
  fi
  [[ $backend == - ]] || pairs+=("port_value: 50051" "port_value: $backend")
  if [[ -n $services ]]; then
    local block
    # Every service the transcoder lists (the API's and google.longrunning.Operations).
    block=$(grep -E '^ +- (supportdesk\.v1\.[A-Za-z]+Service|google\.longrunning\.Operations)$' "$root/deploy/envoy/envoy.yaml")
    pairs+=("$block" "$(printf '%s\n' "$block" | head -n 1 | sed -E "s/(supportdesk\.v1\.[A-Za-z]+|google\.longrunning\.Operations)/$services/")")
  fi
  local i from to count
  for ((i = 0; i < ${#pairs[@]}; i += 2)); do
    from=${pairs[i]} to=${pairs[i + 1]}
    count=$(grep -cF -- "$(printf '%s\n' "$from" | head -n 1)" <<<"$config" || true)
    [[ $count == 1 ]] || sd_die "$template should contain '$(printf '%s\n' "$from" | head -n 1)' once, not $count times"
    config=${config/"$from"/"$to"}
  done
  if [[ ${ENVOY_ACCESS_LOG:-null} == null ]]; then
    # The file logger's type, and its path beside it at the type's own indentation (the template
    # and a rendered configuration indent differently).
    [[ $(grep -c 'extensions.access_loggers.stream.v3.StdoutAccessLog' <<<"$config") == 1 ]] ||
      sd_die "$template should name StdoutAccessLog once"
    config=$(awk '/extensions\.access_loggers\.stream\.v3\.StdoutAccessLog/ {
        sub(/extensions\.access_loggers\.stream\.v3\.StdoutAccessLog/, "extensions.access_loggers.file.v3.FileAccessLog")
        print
        indent = $0
        sub(/[^ ].*/, "", indent)
        print indent "path: /dev/null"
        next
      } { print }' <<<"$config")
  fi
  printf '%s\n' "$config" >"$out"
}
