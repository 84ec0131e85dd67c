//! Envoy's configuration, rendered for a deployment shape by `supportdesk envoy-config`: the
//! checked-in template `deploy/envoy/envoy.yaml` (the commented, human-readable base, built into
//! the binary) read as a YAML value, what varies set by key path, and written as YAML. Nothing
//! is found by its text: a route by its `name`, a cluster or listener by its `name`, a filter by
//! its `name`, so a template that lost one fails the rendering with the name it looked for.
//!
//! What it sets (docs/deployment.md, "Envoy's configuration"):
//! - the browser origins CORS allows ([`EnvoySettings::origins`]);
//! - the deadline of every route to the `supportdesk` cluster and the retry routes' per-try
//!   timeout, a third of it;
//! - the retry routes, from the method table ([`crate::wire::retry_rule`]), and the plain GET
//!   routes, from the OpenAPI document ([`rest_routes`]), before the catch-all route;
//! - the long streams' cluster: its circuit breaker and the export and watch routes' deadlines,
//!   from the service's own caps;
//! - the instances and their health-check interval (a third of `SHUTDOWN_DELAY_MS`);
//! - the Lua filter's script, `deploy/envoy/filter.lua`, inline, its REST tables written;
//! - per shape ([`Shape`]): Kubernetes listens on all addresses, adds the kubelet's probes
//!   listener, resolves the headless Service, and reads the descriptor set and the OpenAPI
//!   document where the Envoy pod's init containers write them.

pub mod rest_routes;
pub mod settings;

use std::fmt;

use serde_json::json;
use serde_norway::Value;

pub use settings::{EnvoySettings, SettingError, Upstream};

use crate::wire::methods::MethodTable;
use crate::wire::retry_rule::RetryRule;

/// The template, as checked in: the binary renders from its own copy, so the configuration
/// always matches the version deployed.
pub const TEMPLATE: &str = include_str!("../../../deploy/envoy/envoy.yaml");
/// The Lua filter's script, written inline by the rendering.
pub const FILTER: &str = include_str!("../../../deploy/envoy/filter.lua");
/// The script's path in the template (`default_source_code.filename`), where the template run
/// as it is reads it from.
const FILTER_PATH: &str = "deploy/envoy/filter.lua";

/// How far above the service's own longest stream Envoy's deadline for it lies: the service ends
/// its streams first, with a status; Envoy's bound only catches an instance that did not.
const STREAM_DEADLINE_MARGIN_SECS: u64 = 30;

/// Where the Envoy pod's init containers write the descriptor set and the OpenAPI document.
const KUBERNETES_GENERATED: &str = "/var/run/supportdesk";

/// A deployment shape: where Envoy runs, and so what it listens on and how it finds the
/// instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Shape {
    /// One machine (deploy/local/run, the tests, the bench): loopback, the instances at
    /// `UPSTREAM_ADDRESSES` (default 127.0.0.1:50051), files relative to the repository root.
    Local,
    /// A Kubernetes pod (deploy/kubernetes/): the REST listener on all addresses, a `probes`
    /// listener for the kubelet, the headless Service `supportdesk-grpc:50051` resolved by DNS
    /// (the default `UPSTREAM_ADDRESSES`), the generated files under /var/run/supportdesk/.
    Kubernetes,
}

impl Shape {
    /// `UPSTREAM_ADDRESSES` when it is unset.
    pub fn default_upstreams(self) -> &'static str {
        match self {
            Self::Local => "127.0.0.1:50051",
            Self::Kubernetes => "supportdesk-grpc:50051",
        }
    }
}

/// Where Envoy listens and what files it reads, for a caller that runs several on one machine
/// (the tests, the bench); each `None` keeps the shape's own.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Places {
    /// The REST listener's port (template: 8080).
    pub listen_port: Option<u16>,
    /// The admin interface's port (template: 9901).
    pub admin_port: Option<u16>,
    /// The Kubernetes probes listener's port (9902).
    pub probes_port: Option<u16>,
    /// The descriptor set the transcoder reads (template: deploy/envoy/supportdesk.pb).
    pub descriptor: Option<String>,
    /// The OpenAPI document Envoy serves (template: docs/openapi.json).
    pub openapi_document: Option<String>,
}

/// The template lacks what the rendering sets, or an input cannot be made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderError(pub String);

impl fmt::Display for RenderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RenderError {}

/// Envoy's configuration for `shape` with `settings`, as YAML.
pub fn render(
    shape: Shape,
    settings: &EnvoySettings,
    places: &Places,
) -> Result<String, RenderError> {
    let config = configuration(TEMPLATE, FILTER, shape, settings, places)?;
    let text = serde_norway::to_string(&config)
        .map_err(|error| RenderError(format!("cannot write the configuration: {error}")))?;
    Ok(format!(
        "# Rendered by `supportdesk envoy-config --shape {}` from deploy/envoy/envoy.yaml, whose\n\
         # comments say why each part is as it is. Do not edit: render again.\n{text}",
        match shape {
            Shape::Local => "local",
            Shape::Kubernetes => "kubernetes",
        }
    ))
}

/// `template` (with the Lua script `filter`) rendered for `shape` as a YAML value.
pub fn configuration(
    template: &str,
    filter: &str,
    shape: Shape,
    settings: &EnvoySettings,
    places: &Places,
) -> Result<Value, RenderError> {
    let mut config: Value = serde_norway::from_str(template)
        .map_err(|error| RenderError(format!("the template is not YAML: {error}")))?;
    let table = MethodTable::get().map_err(|error| RenderError(error.to_string()))?;
    let document: serde_json::Value = serde_json::from_str(
        &crate::wire::openapi::render().map_err(|error| RenderError(error.to_string()))?,
    )
    .map_err(|error| RenderError(format!("the OpenAPI document is not JSON: {error}")))?;

    let connection_manager = "static_resources/listeners/[rest]/filter_chains/0/filters/[envoy.filters.network.http_connection_manager]/typed_config";
    let virtual_host = format!("{connection_manager}/route_config/virtual_hosts/[supportdesk]");
    let routes = format!("{virtual_host}/routes");

    // CORS: exactly the allowed origins; none is a pattern no Origin header matches.
    let origins: Vec<serde_json::Value> = if settings.origins.is_empty() {
        vec![json!({ "exact": "" })]
    } else {
        settings
            .origins
            .iter()
            .map(|origin| json!({ "exact": origin }))
            .collect()
    };
    *at(
        &mut config,
        &format!(
            "{virtual_host}/typed_per_filter_config/envoy.filters.http.cors/allow_origin_string_match"
        ),
    )? = yaml(json!(origins));

    // The deadline of every request to the instances, and (gRPC) the cap on its grpc-timeout.
    let deadline = format!("{}s", settings.route_timeout_secs);
    let catch_all = named(at(&mut config, &routes)?, "catch_all")?;
    let mut action = catch_all
        .get("route")
        .cloned()
        .ok_or_else(|| missing("the catch_all route's `route`"))?;
    set_deadline(&mut action, &deadline)?;

    // The generated routes go before the catch-all, in this order: the plain GETs first, so
    // that they are routed after a handful of routes, not a hundred.
    let action_json: serde_json::Value = serde_norway::from_value(action)
        .map_err(|error| RenderError(format!("the catch_all route: {error}")))?;
    let per_try = seconds(settings.route_timeout_secs * 1000 / 3);
    let mut generated = rest_routes::plain_get_routes(&document, &action_json);
    generated.extend(RetryRule::of(table).envoy_routes(&deadline, &per_try));
    {
        let list = sequence(at(&mut config, &routes)?, &routes)?;
        let position = list
            .iter()
            .position(|route| route.get("name").and_then(Value::as_str) == Some("catch_all"))
            .ok_or_else(|| missing("the route catch_all"))?;
        list.splice(position..position, generated.into_iter().map(yaml));
        for route in list.iter_mut() {
            let to_instances = route.get("route").and_then(|action| action.get("cluster"))
                == Some(&Value::from("supportdesk"));
            if to_instances {
                set_deadline(route.get_mut("route").expect("checked above"), &deadline)?;
            }
        }
    }

    // The long streams: their own deadlines and circuit breaker (docs/rate-limits.md,
    // "Concurrent streams").
    let export = format!(
        "{}s",
        settings.export_duration_secs + STREAM_DEADLINE_MARGIN_SECS
    );
    let export_route = at(&mut config, &format!("{routes}/[export_tickets]/route"))?;
    set_deadline(export_route, &export)?;
    let watch = format!(
        "{}s",
        settings.watch_duration_secs + STREAM_DEADLINE_MARGIN_SECS
    );
    let watch_route = at(&mut config, &format!("{routes}/[watch_events]/route"))?;
    set_deadline(watch_route, &watch)?;
    *at(watch_route, "idle_timeout")? =
        Value::from(format!("{}s", 3 * settings.watch_heartbeat_secs));
    let streams = settings.stream_instances
        * (settings.watch_streams_per_instance + settings.export_streams_per_instance);
    *at(
        &mut config,
        "static_resources/clusters/[supportdesk-streams]/circuit_breakers/thresholds/0/max_requests",
    )? = Value::from(streams);

    // The instances, and their health-check interval: a third of the drain's delay, so that two
    // failed checks fit in it with one interval to spare.
    let interval = seconds((settings.shutdown_delay_ms / 3).max(1));
    let endpoints: Vec<serde_json::Value> = settings
        .upstreams
        .iter()
        .map(|upstream| {
            json!({ "endpoint": { "address": { "socket_address": {
                "address": upstream.host, "port_value": upstream.port,
            } } } })
        })
        .collect();
    for cluster in ["supportdesk", "supportdesk-streams"] {
        let cluster = at(
            &mut config,
            &format!("static_resources/clusters/[{cluster}]"),
        )?;
        *at(cluster, "load_assignment/endpoints")? = yaml(json!([{ "lb_endpoints": endpoints }]));
        let check = at(cluster, "health_checks/0")?;
        *at(check, "interval")? = Value::from(interval.clone());
        *at(check, "no_traffic_interval")? = Value::from(interval.clone());
        if shape == Shape::Kubernetes {
            // The headless Service: every ready pod's address, re-resolved every 2 s; a pod that
            // turns unready or terminates leaves the answer (docs/deployment.md, "Probes").
            *at(cluster, "type")? = Value::from("STRICT_DNS");
            let cluster = cluster
                .as_mapping_mut()
                .ok_or_else(|| missing("a cluster mapping"))?;
            cluster.insert("dns_lookup_family".into(), "V4_ONLY".into());
            cluster.insert("dns_refresh_rate".into(), "2s".into());
            cluster.insert("respect_dns_ttl".into(), false.into());
        }
    }

    // The Lua filter's script, inline, its REST tables written from the OpenAPI document.
    let lua = at(
        &mut config,
        &format!(
            "{connection_manager}/http_filters/[envoy.filters.http.lua]/typed_config/default_source_code"
        ),
    )?;
    if lua.get("filename").and_then(Value::as_str) != Some(FILTER_PATH) {
        return Err(missing(&format!(
            "the Lua filter's `filename: {FILTER_PATH}`"
        )));
    }
    *lua = yaml(json!({ "inline_string": lua_script(filter, &document)? }));

    // The files and ports.
    let generated = |name: &str| format!("{KUBERNETES_GENERATED}/{name}");
    let (descriptor, openapi_document) = match shape {
        Shape::Local => (places.descriptor.clone(), places.openapi_document.clone()),
        Shape::Kubernetes => (
            Some(
                places
                    .descriptor
                    .clone()
                    .unwrap_or_else(|| generated("supportdesk.pb")),
            ),
            Some(
                places
                    .openapi_document
                    .clone()
                    .unwrap_or_else(|| generated("openapi.json")),
            ),
        ),
    };
    if let Some(descriptor) = descriptor {
        *at(
            &mut config,
            &format!(
                "{connection_manager}/http_filters/[envoy.filters.http.grpc_json_transcoder]/typed_config/proto_descriptor"
            ),
        )? = Value::from(descriptor);
    }
    if let Some(document) = openapi_document {
        *at(
            &mut config,
            &format!("{routes}/[openapi_document]/direct_response/body/filename"),
        )? = Value::from(document);
    }
    if let Some(port) = places.listen_port {
        *at(
            &mut config,
            "static_resources/listeners/[rest]/address/socket_address/port_value",
        )? = Value::from(port);
    }
    if let Some(port) = places.admin_port {
        *at(&mut config, "admin/address/socket_address/port_value")? = Value::from(port);
    }
    if shape == Shape::Kubernetes {
        kubernetes(&mut config, places)?;
    }
    Ok(config)
}

/// What a Kubernetes pod adds: the REST listener on every address, and for the kubelet a
/// `probes` listener on 0.0.0.0:9902 answering GET /ready from the admin interface (which stays
/// on loopback), and nothing else.
fn kubernetes(config: &mut Value, places: &Places) -> Result<(), RenderError> {
    *at(
        config,
        "static_resources/listeners/[rest]/address/socket_address/address",
    )? = Value::from("0.0.0.0");
    let probes = json!({
        "name": "probes",
        "address": { "socket_address": {
            "address": "0.0.0.0", "port_value": places.probes_port.unwrap_or(9902),
        } },
        "filter_chains": [{ "filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                "stat_prefix": "probes",
                "route_config": { "virtual_hosts": [{
                    "name": "probes",
                    "domains": ["*"],
                    "routes": [
                        {
                            "match": { "path": "/ready", "headers": [
                                { "name": ":method", "string_match": { "exact": "GET" } },
                            ] },
                            "route": { "cluster": "admin" },
                        },
                        { "match": { "prefix": "/" }, "direct_response": { "status": 404 } },
                    ],
                }] },
                "http_filters": [{
                    "name": "envoy.filters.http.router",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router",
                    },
                }],
            },
        }] }],
    });
    sequence(
        at(config, "static_resources/listeners")?,
        "static_resources/listeners",
    )?
    .insert(0, yaml(probes));
    // The admin interface, for the probes listener's /ready only.
    let admin = json!({
        "name": "admin",
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": "admin",
            "endpoints": [{ "lb_endpoints": [{ "endpoint": { "address": { "socket_address": {
                "address": "127.0.0.1", "port_value": places.admin_port.unwrap_or(9901),
            } } } }] }],
        },
    });
    sequence(
        at(config, "static_resources/clusters")?,
        "static_resources/clusters",
    )?
    .insert(0, yaml(admin));
    Ok(())
}

/// The Lua script with its one [`rest_routes::LUA_MARKER`] line replaced by the REST tables,
/// indented as that line is.
fn lua_script(filter: &str, document: &serde_json::Value) -> Result<String, RenderError> {
    let markers = filter
        .lines()
        .filter(|line| line.trim_start().starts_with(rest_routes::LUA_MARKER))
        .count();
    if markers != 1 {
        return Err(RenderError(format!(
            "{FILTER_PATH} has {markers} `{}` lines, not 1",
            rest_routes::LUA_MARKER
        )));
    }
    let mut out = String::with_capacity(filter.len() + 64 * 1024);
    for line in filter.trim_end_matches('\n').lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with(rest_routes::LUA_MARKER) {
            let indent = &line[..line.len() - trimmed.len()];
            for table_line in rest_routes::lua_tables(document) {
                out.push_str(indent);
                out.push_str(&table_line);
                out.push('\n');
            }
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    Ok(out)
}

/// Sets a route action's deadline: `timeout` and, for gRPC, `max_grpc_timeout`.
fn set_deadline(action: &mut Value, deadline: &str) -> Result<(), RenderError> {
    let action = action
        .as_mapping_mut()
        .ok_or_else(|| missing("a route action mapping"))?;
    action.insert("timeout".into(), deadline.into());
    action.insert("max_grpc_timeout".into(), deadline.into());
    Ok(())
}

/// Milliseconds as Envoy's duration with three decimals (`1.000s`).
fn seconds(millis: u64) -> String {
    format!("{}.{:03}s", millis / 1000, millis % 1000)
}

fn yaml(value: serde_json::Value) -> Value {
    serde_norway::to_value(value).expect("JSON is YAML")
}

fn missing(what: &str) -> RenderError {
    RenderError(format!("deploy/envoy/envoy.yaml has no {what}"))
}

fn sequence<'a>(value: &'a mut Value, path: &str) -> Result<&'a mut Vec<Value>, RenderError> {
    value
        .as_sequence_mut()
        .ok_or_else(|| missing(&format!("list at {path}")))
}

/// The element of the list `value` whose `name` is `name`.
fn named<'a>(value: &'a mut Value, name: &str) -> Result<&'a mut Value, RenderError> {
    value
        .as_sequence_mut()
        .and_then(|list| {
            list.iter_mut()
                .find(|item| item.get("name").and_then(Value::as_str) == Some(name))
        })
        .ok_or_else(|| missing(&format!("entry named {name}")))
}

/// The value at `path` under `value`: `/`-separated steps, each a key, a list index, or
/// `[name]` for the element of a list with that `name`.
fn at<'a>(value: &'a mut Value, path: &str) -> Result<&'a mut Value, RenderError> {
    let mut current = value;
    for step in path.split('/') {
        current = if let Some(name) = step
            .strip_prefix('[')
            .and_then(|rest| rest.strip_suffix(']'))
        {
            named(current, name)?
        } else if let Ok(index) = step.parse::<usize>() {
            current
                .get_mut(index)
                .ok_or_else(|| missing(&format!("element {index} in {path}")))?
        } else {
            current
                .get_mut(step)
                .ok_or_else(|| missing(&format!("`{step}` in {path}")))?
        };
    }
    Ok(current)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> EnvoySettings {
        EnvoySettings::from_lookup(Shape::Local.default_upstreams(), |_| None)
            .expect("the default settings")
    }

    #[test]
    fn every_route_of_every_shape_has_a_name_of_its_own() {
        for shape in [Shape::Local, Shape::Kubernetes] {
            let config =
                configuration(TEMPLATE, FILTER, shape, &defaults(), &Places::default()).unwrap();
            let routes = &config["static_resources"]["listeners"]
                .as_sequence()
                .unwrap()
                .iter()
                .find(|listener| listener["name"] == "rest")
                .unwrap()["filter_chains"][0]["filters"][0]["typed_config"]["route_config"]["virtual_hosts"]
                [0]["routes"];
            let mut names = std::collections::BTreeSet::new();
            for route in routes.as_sequence().unwrap() {
                let name = route["name"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{route:?}"));
                assert!(names.insert(name.to_owned()), "{name} twice");
            }
            assert!(names.contains("plain_get"), "{names:?}");
            assert!(
                names.contains("retry_safe/supportdesk.v1.TicketService/GetTicket"),
                "{names:?}"
            );
        }
    }

    #[test]
    fn the_settings_land_where_envoy_reads_them() {
        let mut settings =
            EnvoySettings::from_lookup(Shape::Kubernetes.default_upstreams(), |_| None)
                .expect("the default settings");
        settings.route_timeout_secs = 2;
        settings.shutdown_delay_ms = 900;
        settings.origins = vec![];
        let text = render(Shape::Kubernetes, &settings, &Places::default()).unwrap();
        assert!(text.contains("timeout: 2s"), "the route deadline");
        assert!(
            text.contains("per_try_timeout: 0.666s"),
            "the per-try timeout"
        );
        assert!(
            text.contains("interval: 0.300s"),
            "the health-check interval"
        );
        assert!(text.contains("address: supportdesk-grpc"), "the instances");
        assert!(text.contains("/var/run/supportdesk/supportdesk.pb"));
        assert!(!text.contains("timeout: 15s"));
        assert!(!text.contains(rest_routes::LUA_MARKER));
        assert!(text.contains("REST_ROUTES = {"));
    }
}
