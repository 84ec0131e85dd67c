-- The script of Envoy's Lua filter in front of supportdesk (the envoy.filters.http.lua entry of
-- deploy/envoy/envoy.yaml, whose comments say where it sits among the filters and why;
-- docs/http-contract.md is the contract it helps keep). `supportdesk envoy-config` writes it inline
-- into the rendered configuration, the REST tables below filled from docs/openapi.json.
--
-- Request path: a caller's x-request-id is kept only when it is
-- short and plain (at most 128 characters of [A-Za-z0-9._:-], as the
-- service keeps it); any other is dropped, so the service makes one
-- up and returns it, and Envoy passes that one back.
--
-- A CORS preflight (OPTIONS with Origin and
-- Access-Control-Request-Method) reaches this filter only when the
-- cors filter above did not answer it: its origin is not allowed. It
-- is refused here with the API's error JSON, so the developer sees why
-- (the browser reports a preflight without an OK status), instead of
-- going on to the transcoder as an unknown path.
-- The REST routes, written here by `supportdesk envoy-config` from the OpenAPI
-- document (rest_checks below; src/wire/envoy/rest_routes.rs says what
-- they hold). Left empty, nothing is checked.
REST_ROUTES, REST_BODIES, REST_ENUMS = {}, {}, {}

function envoy_on_request(handle)
  local headers = handle:headers()
  local path = headers:get(":path") or ""
  local method = headers:get(":method")
  if (method == "GET" or method == "HEAD")
      and (path == "/healthz" or string.find(path, "/healthz?", 1, true) == 1) then
    health(handle, path)
    return
  end
  if headers:get(":method") == "OPTIONS" and headers:get("origin") ~= nil
      and headers:get("access-control-request-method") ~= nil then
    -- local_reply_config makes it the error JSON (403 mapper).
    handle:respond({[":status"] = "403"},
      "this origin may not call the API from a browser: it is not one"
      .. " of the allowed origins (CORS_ALLOWED_ORIGINS)")
    return
  end
  local id = headers:get("x-request-id")
  if id ~= nil and (#id > 128 or string.find(id, "[^%w%._:%-]") ~= nil) then
    headers:remove("x-request-id")
  end
  -- gRPC and gRPC-Web (which the grpc_web filter above has made gRPC)
  -- are not REST.
  if string.find(headers:get("content-type") or "", "application/grpc", 1, true) ~= 1 then
    rest_checks(handle, headers, path, method)
  end
end

-- What the transcoder cannot say, from the routes of the OpenAPI
-- document (docs/http-contract.md): a known path called with a method it
-- does not serve is 405 with `Allow`; a JSON body sent as another media
-- type (or none) is 415; a JSON body with members the request does not
-- have is 400 UNKNOWN_FIELD naming every one of them. Paths no route
-- matches go on to the transcoder (404 UNKNOWN_PATH); HttpBody bodies
-- (webhooks, direct uploads) are never read here.
function rest_checks(handle, headers, full_path, method)
  local path = string.match(full_path, "^[^?#]*")
  if #path > 1 and string.sub(path, -1) == "/" then
    path = string.sub(path, 1, -2)
  end
  local known, allowed, body = false, {}, nil
  for _, route in ipairs(REST_ROUTES) do
    if string.find(path, route[1]) ~= nil then
      known = true
      for served, spec in pairs(route[2]) do
        allowed[served] = true
        if served == method then
          body = spec
        end
      end
    end
  end
  if not known then
    return
  end
  local metadata = handle:streamInfo():dynamicMetadata()
  if body == nil then
    local list = {}
    for served in pairs(allowed) do
      list[#list + 1] = served
    end
    table.sort(list)
    local allow = table.concat(list, ", ")
    refuse(handle, "405", 12, "METHOD_NOT_ALLOWED",
      method .. " is not served at this path; it serves " .. allow, nil,
      {["allow"] = allow})
    return
  end
  if body == false or body == "raw" then
    metadata:set("supportdesk", "body_field", "")
    return
  end
  -- For naming the fields of the transcoder's own refusals (shape).
  metadata:set("supportdesk", "body_field", body[2])
  -- Read before the body: the headers object is gone once body() waited.
  local sent = headers:get("content-type") or "none"
  local buffered = handle:body()
  if buffered == nil or buffered:length() == 0 then
    return
  end
  local media = string.lower(sent)
  if string.match(media, "^application/json%s*;") == nil
      and string.match(media, "^application/json%s*$") == nil then
    refuse(handle, "415", 3, "UNSUPPORTED_MEDIA_TYPE",
      "the body must be JSON sent with content-type: application/json, not "
      .. sent, nil, {["accept-" .. string.lower(method)] = "application/json"})
    return
  end
  local members = REST_BODIES[body[1]]
  if members == nil then
    return
  end
  local found = {unknown = 0}
  local text = buffered:getBytes(0, buffered:length())
  if json_value(text, 1, members, "", found, 0) == nil or #found == 0 then
    -- Not JSON at all: the transcoder says so (MALFORMED_REQUEST).
    return
  end
  local texts = {}
  for _, violation in ipairs(found) do
    texts[#texts + 1] = violation[1] .. " " .. violation[2]
  end
  refuse(handle, "400", 3, found.unknown > 0 and "UNKNOWN_FIELD" or "MALFORMED_REQUEST",
    "invalid request: " .. table.concat(texts, "; "), found, nil)
end

-- Walks the JSON value at `at` of `text`, adding to `found` a {path,
-- description} for every member that `members` (a REST_BODIES entry,
-- nil: unchecked) does not have, and every list where one value is
-- expected. Returns the index after the value, or nil when the text is
-- not JSON (left to the transcoder to refuse). At most 100 violations,
-- 64 levels.
function json_value(text, at, members, path, found, depth)
  at = string.find(text, "[^ \t\r\n]", at)
  if at == nil or depth > 64 then
    return nil
  end
  local byte = string.byte(text, at)
  if byte == 34 then
    local _, after = json_string_at(text, at)
    return after
  end
  if byte == 123 then
    at = string.find(text, "[^ \t\r\n]", at + 1)
    if at ~= nil and string.byte(text, at) == 125 then
      return at + 1
    end
    while at ~= nil do
      local raw, after = json_string_at(text, at)
      if raw == nil then
        return nil
      end
      local key = json_unescape(raw)
      local member_path = path == "" and key or (path .. "." .. key)
      local child = nil
      at = string.find(text, "[^ \t\r\n]", after)
      if at == nil or string.byte(text, at) ~= 58 then
        return nil
      end
      at = string.find(text, "[^ \t\r\n]", at + 1)
      if at == nil then
        return nil
      end
      if members ~= nil and #found < 100 then
        local spec = members[key]
        local list = string.byte(text, at) == 91
        if spec == nil then
          found[#found + 1] = {member_path,
            "is not a field of this request"}
          found.unknown = found.unknown + 1
        elseif list and (spec == 0 or (type(spec) == "string" and string.byte(spec, 1) ~= 42)) then
          found[#found + 1] = {member_path, "must be a single value, not a list"}
        elseif spec == 0 and string.byte(text, at) == 123 then
          found[#found + 1] = {member_path, "must be a single value, not an object"}
        elseif type(spec) == "string" then
          child = REST_BODIES[string.gsub(spec, "^%*", "")]
        end
      end
      at = json_value(text, at, child, member_path, found, depth + 1)
      if at == nil then
        return nil
      end
      at = string.find(text, "[^ \t\r\n]", at)
      if at == nil then
        return nil
      end
      byte = string.byte(text, at)
      if byte == 125 then
        return at + 1
      end
      if byte ~= 44 then
        return nil
      end
      at = string.find(text, "[^ \t\r\n]", at + 1)
    end
    return nil
  end
  if byte == 91 then
    at = string.find(text, "[^ \t\r\n]", at + 1)
    if at ~= nil and string.byte(text, at) == 93 then
      return at + 1
    end
    local index = 0
    while at ~= nil do
      at = json_value(text, at, members, path .. "[" .. index .. "]", found, depth + 1)
      if at == nil then
        return nil
      end
      at = string.find(text, "[^ \t\r\n]", at)
      if at == nil then
        return nil
      end
      byte = string.byte(text, at)
      if byte == 93 then
        return at + 1
      end
      if byte ~= 44 then
        return nil
      end
      index = index + 1
      at = at + 1
    end
    return nil
  end
  -- A number, true, false or null: up to the next delimiter.
  local after = string.find(text, "[,}%] \t\r\n]", at)
  if after == at then
    return nil
  end
  return after or (#text + 1)
end

-- The raw text of the JSON string starting at `at` (a quote) and the
-- index after it; nil when it is not one.
function json_string_at(text, at)
  if string.byte(text, at) ~= 34 then
    return nil
  end
  local from = at + 1
  while true do
    local stop = string.find(text, '["\\]', from)
    if stop == nil then
      return nil
    end
    if string.byte(text, stop) == 34 then
      return string.sub(text, at + 1, stop - 1), stop + 1
    end
    from = stop + 2
  end
end

-- A member name as the transcoder reads it: ASCII escapes decoded.
function json_unescape(raw)
  if string.find(raw, "\\", 1, true) == nil then
    return raw
  end
  local decoded = string.gsub(raw, "\\u(%x%x%x%x)", function(hex)
    local code = tonumber(hex, 16)
    if code < 128 then
      return string.char(code)
    end
    return nil
  end)
  decoded = string.gsub(decoded, '\\(["\\/])', "%1")
  return decoded
end

-- `text` as a JSON string.
function json_quote(text)
  local quoted = string.gsub(text, '[%c"\\]', function(character)
    if character == '"' or character == "\\" then
      return "\\" .. character
    end
    if character == "\n" then
      return "\\n"
    end
    return string.format("\\u%04x", string.byte(character))
  end)
  return '"' .. quoted .. '"'
end

-- The service's error JSON: the google.rpc.Status with ErrorInfo of
-- `reason`, and a BadRequest of `violations` ({field, description}
-- pairs) when there are any.
function error_json(code, reason, message, violations)
  local details = '{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":'
    .. json_quote(reason) .. ',"domain":"supportdesk","metadata":{}}'
  if violations ~= nil and #violations > 0 then
    local items = {}
    for _, violation in ipairs(violations) do
      items[#items + 1] = '{"field":' .. json_quote(violation[1])
        .. ',"description":' .. json_quote(violation[2]) .. '}'
    end
    details = details .. ',{"@type":"type.googleapis.com/google.rpc.BadRequest","fieldViolations":['
      .. table.concat(items, ",") .. ']}'
  end
  return '{"code":' .. code .. ',"message":' .. json_quote(message)
    .. ',"details":[' .. details .. ']}'
end

-- Answers the request here, in the service's error JSON: ErrorInfo with
-- `reason`, and a BadRequest of `violations` ({field, description}
-- pairs) when given; `extra` headers added (Allow, Accept-Post).
function refuse(handle, status, code, reason, message, violations, extra)
  local reply = {[":status"] = status, ["content-type"] = "application/json"}
  for name, value in pairs(extra or {}) do
    reply[name] = value
  end
  -- local_reply_config leaves a reply so marked as it is.
  local metadata = handle:streamInfo():dynamicMetadata()
  metadata:set("supportdesk", "reply", "lua")
  metadata:set("supportdesk", "grpc_status", tostring(code))
  handle:respond(reply, error_json(code, reason, message, violations))
end

-- GET /healthz[?service=NAME]: the REST face of gRPC health, for load
-- balancers. One grpc.health.v1.Health/Check call to the service (the
-- whole server, or the service named), answered 200
-- {"status":"SERVING"}, or 503 with the status it reported
-- ({"status":"NOT_SERVING"}) or {"status":"UNREACHABLE"} when the
-- service did not answer within 2 s; 404 for a service it does not
-- know, 400 for a name that is not a service's.
function health(handle, path)
  local service = string.match(path, "[?&]service=([^&]*)") or ""
  if string.find(service, "[^%w%._]") ~= nil or #service > 127 then
    handle:respond({[":status"] = "400", ["content-type"] = "application/json"},
      '{"status":"UNKNOWN","error":"service must be a gRPC service name such as supportdesk.v1.TicketService"}')
    return
  end
  -- HealthCheckRequest{service = 1}, framed: flag, big-endian length.
  local message = ""
  if #service > 0 then
    message = string.char(10, #service) .. service
  end
  local frame = string.char(0, 0, 0, 0, #message) .. message
  local headers, body = handle:httpCall("supportdesk", {
    [":method"] = "POST",
    [":path"] = "/grpc.health.v1.Health/Check",
    [":authority"] = "supportdesk",
    ["content-type"] = "application/grpc",
    ["te"] = "trailers",
    ["grpc-timeout"] = "2S",
  }, frame, 2000, false)
  local json = {["content-type"] = "application/json", ["cache-control"] = "no-store"}
  local grpc_status = headers["grpc-status"]
  if headers[":status"] ~= "200" or (grpc_status ~= nil and grpc_status ~= "0" and grpc_status ~= "5") then
    json[":status"] = "503"
    handle:respond(json, '{"status":"UNREACHABLE"}')
    return
  end
  if grpc_status == "5" then
    json[":status"] = "404"
    handle:respond(json, '{"status":"SERVICE_UNKNOWN"}')
    return
  end
  -- HealthCheckResponse{status = 1}: 08 01 SERVING, 08 02 NOT_SERVING.
  local code = 0
  if body ~= nil and #body >= 7 and string.byte(body, 6) == 8 then
    code = string.byte(body, 7)
  end
  local names = {[1] = "SERVING", [2] = "NOT_SERVING", [3] = "SERVICE_UNKNOWN"}
  json[":status"] = code == 1 and "200" or "503"
  handle:respond(json, '{"status":"' .. (names[code] or "UNKNOWN") .. '"}')
end

-- Response path: shapes REST answers (1, 2), then records the gRPC
-- status the client is told for the access log (3).
function envoy_on_response(handle)
  shape(handle)
  record_grpc_status(handle)
end

function shape(handle)
  local headers = handle:headers()

  -- 1. The transcoder's own 400s (marked by local_reply_config), told in
  -- the service's terms (docs/http-contract.md, "Errors"): the field at
  -- fault named in a BadRequest by its REST path, no internal type names.
  if headers:get("x-supportdesk-local-400") ~= nil then
    headers:remove("x-supportdesk-local-400")
    local body = handle:body(true)
    local reshaped = transcoder_refusal(handle, body:getBytes(0, body:length()))
    if reshaped ~= nil then
      body:setBytes(reshaped)
    end
    return
  end

  -- x-http-content-type: the service names a REST answer's media
  -- type that is not one JSON document (a stream's
  -- application/x-ndjson). Never shown to clients.
  local media = headers:get("x-http-content-type")
  if media ~= nil then
    headers:remove("x-http-content-type")
    if string.find(headers:get("content-type") or "", "application/json", 1, true) == 1 then
      headers:replace("content-type", media)
    end
  end

  -- 2. x-http-status: the service asks for a 2xx other than 200 (201
  -- Created, 202 Accepted, 204 No Content), which gRPC cannot say. It
  -- is an instruction to Envoy, never shown to clients.
  local wanted = headers:get("x-http-status")
  if wanted == nil then
    return
  end
  headers:remove("x-http-status")
  -- Only on REST answers (gRPC-Web must stay 200): a success may become
  -- another 2xx; an error the transcoder made 4xx may become another 4xx
  -- the service declares for its reason (402 for CARD_DECLINED).
  local content_type = headers:get("content-type") or ""
  local status = headers:get(":status") or ""
  if string.find(content_type, "application/json", 1, true) ~= 1 then
    return
  end
  if string.match(status, "^4%d%d$") ~= nil
      and string.match(wanted, "^4%d%d$") ~= nil then
    headers:replace(":status", wanted)
    return
  end
  if status ~= "200" or string.match(wanted, "^2%d%d$") == nil then
    return
  end
  headers:replace(":status", wanted)
  if wanted == "204" then
    -- No Content: drop the transcoded body (`{}`) and what described it.
    -- Headers first: they cannot change once body() has waited.
    headers:remove("content-type")
    handle:body(true):setBytes("")  -- leaves content-length: 0
    -- And gRPC's trailers, which HTTP/2 would still send after a 204.
    local trailers = handle:trailers()
    if trailers ~= nil then
      trailers:remove("grpc-status")
      trailers:remove("grpc-message")
    end
  end
end

-- The transcoder's refusal (its text in `message` of the JSON the 400
-- mapper made) as the service's error JSON; nil to leave it as it is.
--   Could not find field "x" in the type "..."  (a query parameter)
--     -> UNKNOWN_QUERY_PARAMETER naming x
--   <path>: invalid value "v" for type <type>  (body, path or query)
--     -> MALFORMED_REQUEST naming the path, saying what is expected
--   <path>: <anything else>
--     -> MALFORMED_REQUEST naming the path, type names removed
--   anything else (JSON that does not parse) -> MALFORMED_REQUEST as is
function transcoder_refusal(handle, text)
  local escaped = string.match(text, '"message":"(.*)"}%s*$')
  if escaped == nil then
    return nil
  end
  local message = string.gsub(escaped, '\\(.)', {n = "\n", t = "\t", r = "\r", ['"'] = '"', ["\\"] = "\\", ["/"] = "/"})
  local parameter = string.match(message, '^Could not find field "([^"]*)" in the type')
  if parameter ~= nil then
    return error_json(3, "UNKNOWN_QUERY_PARAMETER",
      "invalid request: unknown query parameter " .. parameter,
      {{parameter, "is not a parameter of this request"}})
  end
  local path, problem = string.match(message, "^([%w_%.%[%]]+): (.*)$")
  if path == nil then
    return error_json(3, "MALFORMED_REQUEST", message, nil)
  end
  local field = rest_field(handle, path)
  -- The value comes quoted when it was a JSON string ("HIGH"), bare
  -- otherwise (5), and as the transcoder's own words for a shape it
  -- could not take (Starting an object on a scalar field).
  local value, kind = string.match(problem, "^invalid value (.-) for type (%S+)$")
  local description
  if kind == nil then
    description = string.gsub(string.gsub(problem, "type%.googleapis%.com/[%w%._]+", "its type"),
      "^Proto field", "the field")
  elseif kind == "type.googleapis.com/google.protobuf.Timestamp" then
    description = "must be an RFC 3339 timestamp such as 2026-01-01T00:00:00Z"
  elseif string.find(kind, "^type%.googleapis%.com/") ~= nil or string.find(kind, "^TYPE_") ~= nil then
    local enum = REST_ENUMS[string.gsub(kind, "^type%.googleapis%.com/", "")]
    local expected = ({
      TYPE_INT32 = "a 32-bit integer", TYPE_SINT32 = "a 32-bit integer",
      TYPE_SFIXED32 = "a 32-bit integer", TYPE_UINT32 = "an unsigned 32-bit integer",
      TYPE_FIXED32 = "an unsigned 32-bit integer",
      TYPE_INT64 = "a 64-bit integer (a JSON string of digits)",
      TYPE_SINT64 = "a 64-bit integer (a JSON string of digits)",
      TYPE_SFIXED64 = "a 64-bit integer (a JSON string of digits)",
      TYPE_UINT64 = "an unsigned 64-bit integer (a JSON string of digits)",
      TYPE_FIXED64 = "an unsigned 64-bit integer (a JSON string of digits)",
      TYPE_BOOL = "true or false", TYPE_DOUBLE = "a number", TYPE_FLOAT = "a number",
      TYPE_STRING = "a string", TYPE_BYTES = "base64 text",
    })[kind]
    if enum ~= nil then
      description = "must be one of " .. enum .. ", not " .. value
    elseif expected ~= nil then
      description = "must be " .. expected .. ", not " .. value
    else
      description = "must be a JSON object of this field's type, not " .. value
    end
  else
    field = field .. "." .. rest_field(handle, kind)
    description = "is not of this field's type: "
      .. string.lower(string.sub(value, 1, 1)) .. string.sub(value, 2)
  end
  return error_json(3, "MALFORMED_REQUEST",
    "invalid request: " .. field .. " " .. description, {{field, description}})
end

-- The REST name of a request field path the transcoder or the service
-- named (`ticket.requester_email`): relative to the JSON body when the
-- body is a field of the request (`body: "ticket"`), each name in
-- lowerCamelCase (`requesterEmail`, `pageSize`). The service does the
-- same for its own errors (docs/http-contract.md, "Field paths").
function rest_field(handle, path)
  local recorded = handle:streamInfo():dynamicMetadata():get("supportdesk")
  local prefix = recorded ~= nil and recorded["body_field"] or ""
  if prefix ~= "" and string.find(path, prefix .. ".", 1, true) == 1 then
    path = string.sub(path, #prefix + 2)
  end
  return (string.gsub(path, "_(%l)", string.upper))
end

-- 3. The access log's grpc_status. Envoy's own %GRPC_STATUS% cannot be
-- used for REST: the transcoder has turned grpc-status into the JSON
-- body by now, and Envoy derives a status from the HTTP one instead (400
-- becomes 13 INTERNAL, 404 12 UNIMPLEMENTED). The real one is the body's
-- `code` (the service's status, or the one local_reply_config wrote for
-- Envoy's own replies, which pass here too); for gRPC-Web, grpc-status
-- (whose trailers Envoy no longer sees once grpc_web folded them into the
-- body: it logged 2 UNKNOWN for every success). Kept in dynamic
-- metadata, never in a header, so clients do not see it; the access log
-- falls back to Envoy's reading (CEL response.grpc_status) for anything
-- this does not record.
function record_grpc_status(handle)
  local headers = handle:headers()
  local code = headers:get("grpc-status")
  if code == nil then
    local status = headers:get(":status") or ""
    local content_type = headers:get("content-type") or ""
    local json = string.find(content_type, "application/json", 1, true) == 1
    if string.match(status, "^2%d%d$") and (json or content_type == "") then
      code = "0"
    elseif json then
      local body = handle:body(true)
      code = string.match(body:getBytes(0, body:length()), '^%s*{%s*"code"%s*:%s*(%d+)')
    elseif string.find(content_type, "application/grpc", 1, true) == 1
        or content_type == "application/x-ndjson" then
      -- gRPC(-Web): the status comes in the trailers, which the grpc_web
      -- filter above folds into the body, out of Envoy's sight. Chunks
      -- pass on as they arrive (nothing is buffered: Health/Watch
      -- streams), then the trailers are read here, below that filter.
      -- A REST export (NDJSON) likewise: its status is in its trailers.
      for _ in handle:bodyChunks() do end
      local trailers = handle:trailers()
      if trailers ~= nil then
        code = trailers:get("grpc-status")
      end
    end
  end
  if code ~= nil then
    handle:streamInfo():dynamicMetadata():set("supportdesk", "grpc_status", code)
  end
end
