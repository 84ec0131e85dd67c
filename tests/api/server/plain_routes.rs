//! REST's checks paid for only where they apply (docs/performance-history.md, "REST: the contract
//! paid for only where it applies"): the routes of Envoy's rendered configuration on which a
//! request skips the Lua filter or the buffer, checked against the method table and the OpenAPI
//! document rather than a list kept by hand. Every plain GET skips both, and no request that needs
//! either can skip it: a body, a query string (but a paged read's plain pageSize and pageToken), an
//! unplain request id, an answer the Lua filter must reshape (a status other than 200, a stream), a
//! gRPC call. And through a real Envoy, a paged read answers the same on both kinds of route,
//! whatever its query.

use serde_json::Value as Json;
use serde_norway::Value as Yaml;
use supportdesk::wire::methods::{HttpSuccess, MethodTable};

use crate::rest_contract::concrete_paths;
use crate::support::TestApp;
use crate::support::envoy::{Envoy, render_with};

const LUA: &str = "envoy.filters.http.lua";
const BUFFER: &str = "envoy.filters.http.buffer";

/// What a plain GET route must require of a request, exactly.
const PLAIN_GET_HEADERS: [(&str, &str); 3] = [
    (":method", "exact GET"),
    (":path", "regex [^?]*"),
    ("x-request-id", "regex [A-Za-z0-9._:-]{1,128}"),
];

/// What a paged read's plain route requires: the same, but for a query of pageSize and pageToken
/// only, each once, in values the transcoder takes (src/wire/envoy/rest_routes.rs).
const PLAIN_PAGED_GET_HEADERS: [(&str, &str); 3] = [
    (":method", "exact GET"),
    (
        ":path",
        "regex [^?]*([?](pageSize=[0-9]{1,9}(&pageToken=[A-Za-z0-9_-]*)?|pageToken=[A-Za-z0-9_-]*(&pageSize=[0-9]{1,9})?))?",
    ),
    ("x-request-id", "regex [A-Za-z0-9._:-]{1,128}"),
];

/// Whether the GET of this OpenAPI path item takes pageSize (int32) and pageToken (string).
fn is_paged(item: &Json) -> bool {
    let parameters: Vec<&Json> = item["get"]["parameters"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|parameter| parameter["in"] == "query")
        .collect();
    let has = |name: &str, key: &str, value: &str| {
        parameters
            .iter()
            .any(|parameter| parameter["name"] == name && parameter["schema"][key] == value)
    };
    has("pageSize", "format", "int32") && has("pageToken", "type", "string")
}

/// The routes of the rendered configuration (as deploy/local/run renders it), aliases resolved.
fn rendered_routes() -> Vec<Yaml> {
    let config: Yaml =
        serde_norway::from_str(&render_with(&[])).expect("the rendered configuration is YAML");
    let listeners = config["static_resources"]["listeners"]
        .as_sequence()
        .expect("listeners");
    let mut routes = Vec::new();
    for listener in listeners {
        for chain in listener["filter_chains"].as_sequence().expect("chains") {
            for filter in chain["filters"].as_sequence().expect("filters") {
                let hosts = &filter["typed_config"]["route_config"]["virtual_hosts"];
                for host in hosts.as_sequence().into_iter().flatten() {
                    routes.extend(
                        host["routes"]
                            .as_sequence()
                            .expect("routes")
                            .iter()
                            .cloned(),
                    );
                }
            }
        }
    }
    assert!(
        !routes.is_empty(),
        "no routes in the rendered configuration"
    );
    routes
}

fn skips(route: &Yaml, filter: &str) -> bool {
    let config = &route["typed_per_filter_config"][filter];
    config["disabled"].as_bool() == Some(true)
}

/// Whether `path` (no query) fully matches `regex`, for the only form a plain GET route's regex
/// may take: alternatives joined by `|` (one per path of the route), each of literal characters
/// (escaped or not) and `[^/:]+`, a path variable's segment. `None` when any alternative has
/// another form, which this check cannot vouch for.
fn segment_regex_matches(regex: &str, path: &str) -> Option<bool> {
    let mut matched = false;
    for alternative in regex.split('|') {
        matched |= alternative_matches(alternative, path)?;
    }
    Some(matched)
}

/// [`segment_regex_matches`] for one alternative.
fn alternative_matches(regex: &str, path: &str) -> Option<bool> {
    enum Piece {
        Literal(char),
        Segment,
    }
    let mut pieces = Vec::new();
    let mut rest = regex;
    while let Some(first) = rest.chars().next() {
        if let Some(after) = rest.strip_prefix("[^/:]+") {
            pieces.push(Piece::Segment);
            rest = after;
        } else if first == '\\' {
            let escaped = rest[1..].chars().next()?;
            pieces.push(Piece::Literal(escaped));
            rest = &rest[1 + escaped.len_utf8()..];
        } else if "[](){}*+?|^$.".contains(first) {
            return None;
        } else {
            pieces.push(Piece::Literal(first));
            rest = &rest[first.len_utf8()..];
        }
    }
    fn from(pieces: &[Piece], path: &str) -> bool {
        match pieces.split_first() {
            None => path.is_empty(),
            Some((Piece::Literal(c), more)) => {
                path.strip_prefix(*c).is_some_and(|after| from(more, after))
            }
            Some((Piece::Segment, more)) => (1..=path.len())
                .filter(|end| path.is_char_boundary(*end))
                .take_while(|end| !path[..*end].contains(['/', ':']))
                .any(|end| from(more, &path[end..])),
        }
    }
    Some(from(&pieces, path))
}

/// Whether the GET of this path needs nothing of the Lua filter or the buffer when it comes with
/// no query string and a plain request id: its RPC answers 200 (no x-http-status to apply), with
/// one JSON document (not a stream), and its path variables are strings (nothing the transcoder
/// could refuse in the path).
fn is_plain_get(table: &MethodTable, concrete: &str, item: &Json) -> bool {
    let Some(operation) = item.get("get") else {
        return false;
    };
    let method = table
        .api_methods()
        .find(|m| {
            m.rest_bindings.iter().any(|binding| {
                binding.http_method.eq_ignore_ascii_case("GET")
                    && binding.template.captures(concrete).is_some()
            })
        })
        .unwrap_or_else(|| panic!("no RPC of the method table serves GET {concrete}"));
    let variables_are_strings = item["parameters"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(operation["parameters"].as_array().into_iter().flatten())
        .filter(|parameter| parameter["in"] == "path")
        .all(|parameter| parameter["schema"]["type"] == "string");
    let answers = operation["responses"].as_object().expect("responses");
    let successes: Vec<&String> = answers
        .keys()
        .filter(|code| code.starts_with('2'))
        .collect();
    let json_only = answers
        .get("200")
        .and_then(|answer| answer["content"].as_object())
        .is_some_and(|content| content.len() == 1 && content.contains_key("application/json"));
    method.http_success == HttpSuccess::Ok
        && successes == ["200"]
        && json_only
        && variables_are_strings
}

fn regex_of(route: &Yaml) -> Option<&str> {
    route["match"]["safe_regex"]["regex"].as_str()
}

#[test]
fn every_plain_get_of_the_api_skips_the_lua_filter_and_the_buffer() {
    let table = MethodTable::get().expect("the method table");
    let routes = rendered_routes();
    let plain: Vec<&str> = routes
        .iter()
        .filter(|route| skips(route, LUA) && skips(route, BUFFER))
        .filter_map(regex_of)
        .collect();
    let mut checked = 0;
    for (concrete, item) in concrete_paths("v1a") {
        if !is_plain_get(table, &concrete, &item) {
            continue;
        }
        checked += 1;
        assert!(
            plain
                .iter()
                .any(|regex| segment_regex_matches(regex, &concrete) == Some(true)),
            "GET {concrete} needs neither the Lua filter nor the buffer, yet no route lets it skip them"
        );
    }
    // The API's reads: tickets, users, charges, the dashboard, ... (29 when this was written).
    assert!(checked >= 20, "only {checked} plain GETs found");
}

/// Envoy tries a route table's routes one at a time, at a few hundred instructions each even when
/// the first matcher turns the request away: a plain GET behind the hundred gRPC and REST routes
/// cost Envoy as much as its transcoding (docs/performance-history.md, "REST: the route table").
const MOST_ROUTES_TRIED_BY_A_PLAIN_GET: usize = 8;

#[test]
fn a_plain_get_is_routed_after_a_handful_of_routes_not_a_hundred() {
    let routes = rendered_routes();
    let last_plain = routes
        .iter()
        .rposition(|route| skips(route, LUA))
        .expect("a plain GET route");
    assert!(
        last_plain < MOST_ROUTES_TRIED_BY_A_PLAIN_GET,
        "the last plain GET route is route {} of {}: a plain GET tries every route before it",
        last_plain + 1,
        routes.len()
    );
}

#[test]
fn no_request_that_needs_the_lua_filter_or_the_buffer_can_skip_it() {
    let table = MethodTable::get().expect("the method table");
    let paths = concrete_paths("v1a");
    for route in rendered_routes() {
        let skips_lua = skips(&route, LUA);
        let skips_buffer =
            skips(&route, BUFFER) || route["typed_per_filter_config"][BUFFER]["disabled"] == true;
        if !skips_lua && !skips_buffer {
            continue;
        }
        if let Some(exact) = route["match"]["path"].as_str() {
            // Only a streamed body may skip the buffer by path: a raw (HttpBody) request, over
            // REST or gRPC; and never the Lua filter.
            assert!(!skips_lua, "{exact} skips the Lua filter");
            let streamed = table.api_methods().any(|method| {
                method.rest_bindings.iter().any(|binding| {
                    binding.raw_body
                        && (method.path == exact || binding.template.captures(exact).is_some())
                })
            });
            assert!(
                streamed,
                "{exact} skips the buffer, but its body is not streamed"
            );
            continue;
        }
        assert!(
            skips_lua && skips_buffer,
            "a route skips one of the two but not the other: {route:?}"
        );
        let regex = regex_of(&route)
            .unwrap_or_else(|| panic!("a route skipping the Lua filter has no regex: {route:?}"));
        let headers: Vec<(String, String)> = route["match"]["headers"]
            .as_sequence()
            .into_iter()
            .flatten()
            .map(|header| {
                let matcher = &header["string_match"];
                let rule = match (
                    matcher["exact"].as_str(),
                    matcher["safe_regex"]["regex"].as_str(),
                ) {
                    (Some(exact), _) => format!("exact {exact}"),
                    (None, Some(regex)) => format!("regex {regex}"),
                    (None, None) => format!("{matcher:?}"),
                };
                (header["name"].as_str().unwrap_or_default().to_owned(), rule)
            })
            .collect();
        let expected = |rules: &[(&str, &str)]| -> Vec<(String, String)> {
            rules
                .iter()
                .map(|(name, rule)| ((*name).to_owned(), (*rule).to_owned()))
                .collect()
        };
        let paged = headers == expected(&PLAIN_PAGED_GET_HEADERS);
        assert!(
            paged || headers == expected(&PLAIN_GET_HEADERS),
            "{regex}: a route skipping the Lua filter must take only GETs with no query string (or a plain page query) and a plain request id: {headers:?}"
        );
        for method in table.methods() {
            assert_ne!(
                segment_regex_matches(regex, &method.path),
                Some(true),
                "{regex} takes the gRPC calls of {}",
                method.path
            );
        }
        for (concrete, item) in &paths {
            match segment_regex_matches(regex, concrete) {
                None => panic!("{regex} is not of the form this check can read"),
                Some(false) => {}
                Some(true) => {
                    assert!(
                        is_plain_get(table, concrete, item),
                        "{regex} lets GET {concrete} skip the Lua filter, which its answer needs"
                    );
                    assert!(
                        !paged || is_paged(item),
                        "{regex} takes a page query, but GET {concrete} is not paged"
                    );
                }
            }
        }
    }
}

/// Queries of a paged read: plain ones, which take the plain route, and every kind the
/// transcoder refuses or the plain route leaves to the Lua filter.
const PAGE_QUERIES: [&str; 14] = [
    "",
    "?pageSize=2",
    "?pageSize=2&pageToken=",
    "?pageToken=&pageSize=2",
    "?pageSize=0",
    "?pageSize=abc",
    "?pageSize=99999999999",
    "?pageSize=1&pageSize=2",
    "?page_size=2",
    "?pageToken=not-a-token",
    "?pageToken=%ZZ",
    "?pageSize=2&colour=blue",
    "?pageSize=-1",
    "?pageSize=2&readMask=subject",
];

/// An answer as a client compares it: status and JSON body.
async fn answer_of(response: reqwest::Response) -> (u16, Json) {
    let status = response.status().as_u16();
    let body = response.json().await.expect("a JSON answer");
    (status, body)
}

#[tokio::test]
async fn a_paged_read_answers_the_same_with_or_without_the_lua_filter_whatever_its_query() {
    let app = TestApp::spawn().await;
    let envoy = Envoy::start_in_front_of(app.address.port()).await;
    let http = reqwest::Client::new();
    for query in PAGE_QUERIES {
        let url = envoy.url(&format!("/v1/tickets{query}"));
        let send = |request_id: &'static str| {
            http.get(&url)
                .bearer_auth(&app.admin.access_token)
                .header("x-request-id", request_id)
                .send()
        };
        // A plain request id lets a plain query take the plain route; one with a space always
        // takes the Lua routes (the filter drops it), which answer as the contract says.
        let plain = answer_of(send("page-query-plain").await.expect("an answer")).await;
        let through_lua = answer_of(send("page query lua").await.expect("an answer")).await;
        assert_eq!(plain, through_lua, "GET /v1/tickets{query}");
    }
}

#[test]
fn the_regex_reader_takes_alternatives_of_literals_and_segments_only() {
    assert_eq!(
        segment_regex_matches(r"/v1/tickets/[^/:]+", "/v1/tickets/abc"),
        Some(true)
    );
    assert_eq!(
        segment_regex_matches(r"/v1/tickets/[^/:]+", "/v1/tickets/abc:assign"),
        Some(false)
    );
    assert_eq!(
        segment_regex_matches(r"/v1/tickets/[^/:]+", "/v1/tickets/a/b"),
        Some(false)
    );
    assert_eq!(
        segment_regex_matches(
            r"/v1/billing/reconciliation\-findings",
            "/v1/billing/reconciliation-findings"
        ),
        Some(true)
    );
    assert_eq!(segment_regex_matches(r"/v1/.*", "/v1/x"), None);
    assert_eq!(
        segment_regex_matches(r"/v1/account|/v1/tickets/[^/:]+", "/v1/tickets/abc"),
        Some(true)
    );
    assert_eq!(
        segment_regex_matches(r"/v1/account|/v1/tickets/[^/:]+", "/v1/tickets"),
        Some(false)
    );
    assert_eq!(
        segment_regex_matches(r"/v1/account|/v1/.*", "/v1/account"),
        None
    );
}
