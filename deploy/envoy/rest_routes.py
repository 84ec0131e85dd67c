"""Writes the REST routes of the OpenAPI document into Envoy's Lua filter (deploy/envoy/render).

Reads Envoy's configuration on stdin and writes it to stdout with the Lua filter's script, which
the template names (`filename: deploy/envoy/filter.lua`), written inline in its place, and the
script's one line `REST_ROUTES, REST_BODIES, REST_ENUMS = {}, {}, {}` replaced by three Lua
tables taken from the OpenAPI document named by the first argument (docs/openapi.json, generated from the protos by `supportdesk
openapi`, so the table follows the google.api.http rules and is never written by hand):

- REST_ROUTES: one entry per path, `{pattern, {METHOD = body, ...}}`: the Lua pattern of the
  path template and, for each method it serves, what its request body is: `false` for none (GET,
  DELETE), `"raw"` for a google.api.HttpBody (any media type, never read), or for JSON
  `{entry, field}`: the body's entry in REST_BODIES ("" when not checked) and the request field
  the body fills ("" for `body: "*"`), read from the document's `x-body-field`.
- REST_BODIES: for each JSON body and each object inside it, the member names it may hold (the
  lowerCamelCase JSON name and the proto name, as the transcoder accepts both), each mapped to
  what its value may be (Bodies.spec).
- REST_ENUMS: each enum's values, to name them when the transcoder refuses one.

It also writes, at the line `# PLAIN GET ROUTES`, two routes (the paths that are not paged, the
paged reads) for the paths of the document that serve GET with a JSON answer and only string
path variables: a GET of one with no query string (or, for a paged read, only pageSize and
pageToken in values the transcoder takes) and a plain x-request-id (the one Envoy made, or a
caller's of at most 128 characters of [A-Za-z0-9._:-]) skips the Lua filter and the buffer.
Such a request has nothing either could act on: no body, no query parameter the transcoder could
refuse, no method the path does not serve, no request id to drop, and its answer no
x-http-status or x-http-content-type to apply (only POST and DELETE answers and the streaming
export carry those). Every other REST request takes the catch-all route, with both filters. The
two routes come before the gRPC routes, so that a plain GET is routed after a handful of routes,
not a hundred. docs/performance-history.md ("REST: the contract paid for only where it applies", "REST:
the route table") has the measurements.
"""

import json
import os
import re
import sys

MARKER = "REST_ROUTES, REST_BODIES, REST_ENUMS = {}, {}, {}"
# The Lua filter's script is a file of its own (deploy/envoy/filter.lua), named by the template's
# one `filename:` line of that prefix; it is written inline in its place, the tables filled.
LUA_FILE = "filename: deploy/envoy/filter.lua"
PLAIN_GET_MARKER = "# PLAIN GET ROUTES"
# The request ids the Lua filter keeps (its envoy_on_request); any other takes the Lua routes.
PLAIN_REQUEST_ID = "[A-Za-z0-9._:-]{1,128}"
# The one query a paged read may bring past the Lua filter: pageSize (at most 9 digits, so always
# an int32 the transcoder takes), pageToken (the URL-safe base64 the service writes, nothing to
# unescape), each at most once, in either order. A value the transcoder could refuse (a letter in
# pageSize, 10 digits, a percent escape), a repeated or snake_case name, or any other parameter
# takes the Lua routes, which reshape the transcoder's refusal.
PAGE_SIZE = "pageSize=[0-9]{1,9}"
PAGE_TOKEN = "pageToken=[A-Za-z0-9_-]*"
PLAIN_PAGED_PATH = (
    f"[^?]*([?]({PAGE_SIZE}(&{PAGE_TOKEN})?|{PAGE_TOKEN}(&{PAGE_SIZE})?))?"
)
METHODS = ("get", "put", "post", "delete", "patch")


def lua_string(text):
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def snake(name):
    return re.sub(r"([A-Z])", lambda match: "_" + match.group(1).lower(), name)


def pattern(path):
    """The anchored Lua pattern of an OpenAPI path: a variable is one segment without `:` (the
    verb, as in `/v1/tickets/{id}:assign`, is not part of it)."""
    out = []
    for piece in re.split(r"(\{[^}]*\})", path):
        if piece.startswith("{"):
            out.append("[^/:]+")
        else:
            out.append(re.sub(r"([^%w/])".replace("%w", "A-Za-z0-9"), r"%\1", piece))
    return "^" + "".join(out) + "$"


class Bodies:
    """The REST_BODIES entries: one per object schema with properties met in a request body."""

    def __init__(self, schemas):
        self.schemas = schemas
        self.entries = {}
        self.by_ref = {}

    def spec(self, schema, hint):
        """What a member's value may be: 0 a single value of no checked shape (a list is
        refused), 1 anything (repeated scalars, maps, Struct, Value, Any), an entry name a single
        object of that entry, `*` + an entry name a list of such objects."""
        if "$ref" in schema:
            name = schema["$ref"].rsplit("/", 1)[-1]
            target = self.schemas.get(name, {})
            if "enum" in target:
                return 0
            if "properties" not in target or target.get("additionalProperties"):
                return 1
            if name not in self.by_ref:
                self.by_ref[name] = name
                self.entries[name] = {}
                self.entries[name] = self.members(target, name, ())
            return name
        kind = schema.get("type")
        if kind == "array":
            item = self.spec(schema.get("items", {}), hint)
            return "*" + item if isinstance(item, str) else 1
        if kind == "object":
            if "properties" in schema and not schema.get("additionalProperties"):
                self.entries[hint] = {}
                self.entries[hint] = self.members(schema, hint, ())
                return hint
            return 1
        if not schema:
            return 1
        return 0

    def members(self, schema, name, extra):
        members = {}
        for field, value in schema.get("properties", {}).items():
            child = self.spec(value, name + "." + field)
            members[field] = child
            members[snake(field)] = child
        for field in extra:
            members.setdefault(field, 0)
        return members


def lua_value(value):
    return lua_string(value) if isinstance(value, str) else str(value)


def tables(document):
    schemas = document.get("components", {}).get("schemas", {})
    bodies = Bodies(schemas)
    routes = []
    for path, item in sorted(document["paths"].items()):
        methods = {}
        path_names = [p["name"] for p in item.get("parameters", [])]
        for method in METHODS:
            operation = item.get(method)
            if operation is None:
                continue
            names = path_names + [
                p["name"] for p in operation.get("parameters", []) if p.get("in") == "path"
            ]
            request_body = operation.get("requestBody", {})
            content = request_body.get("content", {})
            if "application/json" in content:
                schema = content["application/json"]["schema"]
                hint = operation.get("operationId", path + " " + method)
                if "$ref" in schema:
                    body = bodies.spec(schema, hint)
                else:
                    # A `body: "*"` request: the fields outside the path, inline. The path's
                    # own variables may be repeated in the body (the service then checks that
                    # they agree: PATH_BODY_MISMATCH).
                    extra = set()
                    for variable in names:
                        extra.update({variable, snake(variable)})
                        extra.add(re.sub(r"_([a-z0-9])", lambda m: m.group(1).upper(), variable))
                    bodies.entries[hint] = {}
                    bodies.entries[hint] = bodies.members(schema, hint, sorted(extra))
                    body = hint
                if not isinstance(body, str):
                    body = ""
                field = request_body.get("x-body-field", "")
                methods[method.upper()] = "{" + lua_string(body) + ", " + lua_string(field) + "}"
            elif content:
                methods[method.upper()] = '"raw"'
            else:
                methods[method.upper()] = "false"
        routes.append((pattern(path), methods))
    enums = {
        name: ", ".join(schema["enum"])
        for name, schema in schemas.items()
        if "enum" in schema
    }
    return routes, bodies.entries, enums


def lua(document, indent):
    routes, entries, enums = tables(document)
    lines = ["REST_ROUTES = {"]
    for path_pattern, methods in routes:
        served = ", ".join(f"{method} = {body}" for method, body in sorted(methods.items()))
        lines.append(f"  {{{lua_string(path_pattern)}, {{{served}}}}},")
    lines.append("}")
    lines.append("REST_BODIES = {")
    for name, members in sorted(entries.items()):
        fields = ", ".join(
            f"[{lua_string(field)}] = {lua_value(child)}"
            for field, child in sorted(members.items())
        )
        lines.append(f"  [{lua_string(name)}] = {{{fields}}},")
    lines.append("}")
    lines.append("REST_ENUMS = {")
    for name, values in sorted(enums.items()):
        lines.append(f"  [{lua_string(name)}] = {lua_string(values)},")
    lines.append("}")
    return "".join(indent + line + "\n" for line in lines)


def regex(path):
    """The RE2 regex of an OpenAPI path, as `pattern` reads it: a variable is one segment
    without `:`."""
    out = []
    for piece in re.split(r"(\{[^}]*\})", path):
        out.append("[^/:]+" if piece.startswith("{") else re.escape(piece))
    return "".join(out)


def plain_get_paths(document):
    """The paths whose GET can skip the Lua filter and the buffer (module docstring)."""
    paths = []
    for path, item in sorted(document["paths"].items()):
        operation = item.get("get")
        if operation is None:
            continue
        variables = [
            p for p in item.get("parameters", []) + operation.get("parameters", [])
            if p.get("in") == "path"
        ]
        if any(p.get("schema", {}).get("type") != "string" for p in variables):
            continue
        answers = operation.get("responses", {})
        successes = [code for code in answers if code.startswith("2")]
        if successes != ["200"] or list(answers["200"].get("content", {})) != ["application/json"]:
            continue
        paths.append(path)
    return paths


def is_paged(document, path):
    """Whether the GET of `path` takes pageSize (int32) and pageToken (string) in its query."""
    parameters = {
        p["name"]: p.get("schema", {})
        for p in document["paths"][path]["get"].get("parameters", [])
        if p.get("in") == "query"
    }
    return (
        parameters.get("pageSize", {}).get("format") == "int32"
        and parameters.get("pageToken", {}).get("type") == "string"
    )


def plain_headers(anchor, path_regex, comment):
    return [
        f"    headers: &{anchor}",
        "      - name: \":method\"",
        "        string_match: { exact: GET }",
        f"      # {comment}",
        "      - name: \":path\"",
        f"        string_match: {{ safe_regex: {{ regex: {json.dumps(path_regex)} }} }}",
        "      - name: x-request-id",
        f"        string_match: {{ safe_regex: {{ regex: {json.dumps(PLAIN_REQUEST_ID)} }} }}",
    ]


def plain_get_routes(document, indent):
    """Two routes for the paths of `plain_get_paths`: one for those that are not paged, one for the
    paged reads, whose route also takes the plain page query (PLAIN_PAGED_PATH). Each route's
    regex is its paths' regexes joined in one alternation: Envoy tries a route table's routes one
    by one, at a few hundred instructions each even when the first matcher turns the request away,
    so one route a path (32 of them, after the gRPC routes) cost a plain GET as much as its
    transcoding (docs/performance-history.md, "REST: the route table")."""
    groups = {False: [], True: []}
    for path in plain_get_paths(document):
        groups[is_paged(document, path)].append(regex(path))
    lines = []
    first = True
    for paged, regexes in groups.items():
        if not regexes:
            continue
        lines.append("- match:")
        lines.append(f"    safe_regex: {{ regex: {json.dumps('|'.join(regexes))} }}")
        if paged:
            lines += plain_headers(
                "plain_paged_get", PLAIN_PAGED_PATH, "No query but pageSize and pageToken, in values the transcoder takes."
            )
        else:
            lines += plain_headers("plain_get", "[^?]*", "No query string: no parameter for the transcoder to refuse.")
        if first:
            lines += [
                "  route: &plain_get_route",
                "    cluster: supportdesk",
                "    retry_policy: *never_reached",
                "    timeout: 15s",
                "    max_grpc_timeout: 15s",
                "  typed_per_filter_config: &plain_get_filters",
                "    envoy.filters.http.lua:",
                "      \"@type\": type.googleapis.com/envoy.config.route.v3.FilterConfig",
                "      disabled: true",
                "    envoy.filters.http.buffer:",
                "      \"@type\": type.googleapis.com/envoy.config.route.v3.FilterConfig",
                "      disabled: true",
            ]
            first = False
        else:
            lines += [
                "  route: *plain_get_route",
                "  typed_per_filter_config: *plain_get_filters",
            ]
    return "".join(indent + line + "\n" for line in lines)


def lua_script(path, document, indent):
    """The Lua script at `path` (relative to the repository root) as the block of an
    `inline_string`, its REST tables written (the one MARKER line), each line under `indent`."""
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
    with open(os.path.join(root, path), encoding="utf-8") as file:
        script = file.read().splitlines()
    markers = sum(1 for line in script if line.strip().startswith(MARKER))
    if markers != 1:
        sys.exit(f"deploy/envoy/rest_routes.py: {path} has {markers} `{MARKER}` lines, not 1")
    out = []
    for line in script:
        if line.strip().startswith(MARKER):
            out.append(lua(document, indent + line[: len(line) - len(line.lstrip())]))
        else:
            out.append(indent + line + "\n" if line else "\n")
    return "".join(out)


def main():
    with open(sys.argv[1], encoding="utf-8") as file:
        document = json.load(file)
    found = 0
    found_plain = 0
    for line in sys.stdin:
        stripped = line.strip()
        indent = line[: len(line) - len(line.lstrip())]
        if stripped == LUA_FILE:
            found += 1
            sys.stdout.write(f"{indent}inline_string: |\n")
            sys.stdout.write(lua_script(LUA_FILE.split(": ", 1)[1], document, indent + "  "))
        elif stripped == PLAIN_GET_MARKER:
            found_plain += 1
            sys.stdout.write(plain_get_routes(document, indent))
        else:
            sys.stdout.write(line)
    if found != 1:
        sys.exit(f"deploy/envoy/rest_routes.py: the template has {found} `{LUA_FILE}` lines, not 1")
    if found_plain != 1:
        sys.exit(f"deploy/envoy/rest_routes.py: the template has {found_plain} `{PLAIN_GET_MARKER}` lines, not 1")


main()
