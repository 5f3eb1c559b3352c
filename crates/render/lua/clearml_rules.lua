-- The rules a routes.json document must pass before the proxy serves it. Pure (no ngx): the
-- Rust types in gateway-core are the authority (RouteId, RouteName, RoutePath, TargetPolicy with
-- loopback allowed, routes_file.rs), and the fixtures in crates/core/fixtures/routes_json hold
-- both readers to the same answers.
--
-- Where cjson cannot see what serde sees, this side accepts what Rust refuses: an empty list
-- where an object is expected (or the reverse: both decode to an empty table), a port written
-- as 80.0 or 8e1, duplicate keys (the last wins), strings that are not UTF-8.

local cjson = require("cjson.safe")

-- A decoder of its own, as strict as serde_json: no NaN, Infinity or hex numbers (not JSON), and
-- serde_json's nesting limit (127 levels).
local json = cjson.new()
json.decode_invalid_numbers(false)
json.decode_max_depth(127)

local _M = {}

-- A JSON object: a table whose keys are all strings (cjson gives lists integer keys).
function _M.is_object(value)
    if type(value) ~= "table" then
        return false
    end
    for key in pairs(value) do
        if type(key) ~= "string" then
            return false
        end
    end
    return true
end

-- A JSON list: a table with keys 1..n.
function _M.is_list(value)
    if type(value) ~= "table" then
        return false
    end
    local count = 0
    for _ in pairs(value) do
        count = count + 1
    end
    return count == #value
end

local function is_string_list(value)
    if not _M.is_list(value) then
        return false
    end
    for _, item in ipairs(value) do
        if type(item) ~= "string" then
            return false
        end
    end
    return true
end

-- `value` is absent or of `kind` (a field with a default in the Rust struct).
local function absent_or(value, kind)
    return value == nil or type(value) == kind
end

---------------------------------------------------------------------------------------------
-- Names (model.rs, static_routes.rs).

local function bounded_match(s, max, pattern)
    return type(s) == "string" and #s >= 1 and #s <= max and s:match(pattern) ~= nil
end

-- RouteId: `<task id>` or `<task id>__<endpoint name>`, split at the first "__".
function _M.route_id(id)
    if type(id) ~= "string" then
        return false
    end
    local task, endpoint = id, nil
    local sep = id:find("__", 1, true)
    if sep then
        task, endpoint = id:sub(1, sep - 1), id:sub(sep + 2)
    end
    if not bounded_match(task, 64, "^[A-Za-z0-9][A-Za-z0-9%-]*$") then
        return false
    end
    return endpoint == nil or bounded_match(endpoint, 64, "^[A-Za-z0-9_%-]+$")
end

-- A DNS label: RouteName and SubdomainLabel.
function _M.label(name)
    return bounded_match(name, 63, "^[a-z0-9%-]+$") and name:sub(1, 1) ~= "-" and name:sub(-1) ~= "-"
end

-- Paths the gateway serves itself (static_routes.rs RESERVED_PATHS).
local RESERVED_PATHS = { "/service", "/__clearml_auth", "/__clearml_router" }

-- RoutePath: '/' then segments of letters, digits and . _ ~ -, one trailing '/' allowed.
function _M.route_path(raw)
    if type(raw) ~= "string" or raw:sub(1, 1) ~= "/" or #raw > 200 then
        return false
    end
    local trimmed = raw:sub(-1) == "/" and raw:sub(1, -2) or raw
    if trimmed == "" then
        return false
    end
    for segment in (trimmed:sub(2) .. "/"):gmatch("([^/]*)/") do
        if segment == "." or segment == ".." or not segment:match("^[A-Za-z0-9._~%-]+$") then
            return false
        end
    end
    local lower = trimmed:lower()
    for _, reserved in ipairs(RESERVED_PATHS) do
        if lower == reserved or lower:sub(1, #reserved + 1) == reserved .. "/" then
            return false
        end
    end
    return true
end

-- A key of static.hosts, `<label>.<router host>`: served only if its first label is valid.
function _M.static_host(host)
    return bounded_match(host, 253, "^[A-Za-z0-9%.%-%[%]:]+$") and _M.label(host:match("^[^.]*"))
end

---------------------------------------------------------------------------------------------
-- Targets: IP addresses as Rust's IpAddr reads them, then TargetPolicy's SSRF rules.

-- Four decimal octets, no leading zeros; the octets, or nil.
function _M.parse_ipv4(s)
    local parts = { s:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$") }
    if #parts ~= 4 then
        return nil
    end
    for i, part in ipairs(parts) do
        if #part > 3 or (#part > 1 and part:sub(1, 1) == "0") or tonumber(part) > 255 then
            return nil
        end
        parts[i] = tonumber(part)
    end
    return parts
end

-- Groups of 1-4 hex digits separated by ':'; the last may be an IPv4 address (two groups).
-- Appends them to `out`; false if a group is malformed.
local function read_groups(s, out, ipv4_allowed)
    if s == "" then
        return true
    end
    local pieces = {}
    for piece in (s .. ":"):gmatch("([^:]*):") do
        pieces[#pieces + 1] = piece
    end
    for i, piece in ipairs(pieces) do
        local v4 = ipv4_allowed and i == #pieces and _M.parse_ipv4(piece)
        if v4 then
            out[#out + 1] = v4[1] * 256 + v4[2]
            out[#out + 1] = v4[3] * 256 + v4[4]
        elseif piece:match("^%x%x?%x?%x?$") then
            out[#out + 1] = tonumber(piece, 16)
        else
            return false
        end
    end
    return true
end

-- The eight 16-bit groups, or nil. "::" stands for one or more zero groups.
function _M.parse_ipv6(s)
    local head, tail = s, nil
    local gap = s:find("::", 1, true)
    if gap then
        head, tail = s:sub(1, gap - 1), s:sub(gap + 2)
    end
    local groups, tail_groups = {}, {}
    if not read_groups(head, groups, tail == nil) or (tail and not read_groups(tail, tail_groups, true)) then
        return nil
    end
    if tail == nil then
        return #groups == 8 and groups or nil
    end
    if #groups + #tail_groups > 7 then
        return nil
    end
    for _ = 1, 8 - #groups - #tail_groups do
        groups[#groups + 1] = 0
    end
    for _, group in ipairs(tail_groups) do
        groups[#groups + 1] = group
    end
    return groups
end

local function ipv4_refused(o)
    return (o[1] == 169 and o[2] == 254) -- link-local: cloud metadata services
        or (o[1] == 100 and o[2] == 100 and o[3] == 100 and o[4] == 200) -- a cloud metadata address
        or o[1] == 0 -- this host
        or (o[1] >= 224 and o[1] <= 239) -- multicast
        or (o[1] == 255 and o[2] == 255 and o[3] == 255 and o[4] == 255) -- broadcast
end

local function octets(high, low)
    return { math.floor(high / 256), high % 256, math.floor(low / 256), low % 256 }
end

local function all_zero(groups, from, to)
    for i = from, to do
        if groups[i] ~= 0 then
            return false
        end
    end
    return true
end

-- The IPv4 address an IPv6 address reaches: mapped, compatible, NAT64 (64:ff9b::/96), 6to4.
local function embedded_ipv4(g)
    local first_six_zero = all_zero(g, 1, 6)
    local loopback_or_unspecified = all_zero(g, 1, 7) and g[8] <= 1
    if (all_zero(g, 1, 5) and g[6] == 0xffff) or (first_six_zero and not loopback_or_unspecified) then
        return octets(g[7], g[8])
    elseif g[1] == 0x64 and g[2] == 0xff9b and all_zero(g, 3, 6) then
        return octets(g[7], g[8])
    elseif g[1] == 0x2002 then
        return octets(g[2], g[3])
    end
    return nil
end

local function ipv6_refused(g)
    local v4 = embedded_ipv4(g)
    if v4 then
        return ipv4_refused(v4)
    end
    return bit.band(g[1], 0xffc0) == 0xfe80 -- link-local
        or all_zero(g, 1, 8) -- unspecified
        or bit.band(g[1], 0xff00) == 0xff00 -- multicast
        or (g[1] == 0xfd00 and g[2] == 0x0ec2 and all_zero(g, 3, 7) and g[8] == 0x254) -- metadata
end

-- A bare IP address the proxy may connect to (loopback allowed: the router already decided).
function _M.target_host(host)
    if type(host) ~= "string" or #host == 0 or #host > 45 then
        return false
    end
    local v4 = _M.parse_ipv4(host)
    if v4 then
        return not ipv4_refused(v4)
    end
    local v6 = _M.parse_ipv6(host)
    if not v6 then
        return false
    end
    return not ipv6_refused(v6)
end

function _M.port(port)
    return type(port) == "number" and port >= 1 and port <= 65535 and port % 1 == 0
end

-- A static route target, `"<ip> <port>"` with a port of 1-5 digits: host and port, or nil.
function _M.static_target(raw)
    if type(raw) ~= "string" then
        return nil
    end
    local host, port = raw:match("^(%S+) (%d%d?%d?%d?%d?)$")
    port = tonumber(port)
    if host and _M.target_host(host) and _M.port(port) then
        return host, port
    end
    return nil
end

---------------------------------------------------------------------------------------------
-- Rate limits (rate_limit.rs).

-- A key: `client` or `header:<Name>`, the name 1-64 token characters but '_'.
function _M.rate_key(key)
    if key == "client" then
        return true
    end
    local name = type(key) == "string" and key:match("^header:(.*)$")
    return bounded_match(name, 64, "^[%w!#%$%%&'%*%+%-%.%^`|~]+$")
end

local RATE_FIELDS = { requests_per_second = true, burst = true, key = true }

-- A route's `rate_limit`: false when absent or null, { rate, burst, key } when it validates,
-- nil when it does not (the entry is then refused). null fields take their defaults, as serde's
-- Option does.
function _M.rate_limit(value)
    if value == nil or value == cjson.null then
        return false
    end
    if not _M.is_object(value) then
        return nil
    end
    for field in pairs(value) do
        if not RATE_FIELDS[field] then
            return nil
        end
    end
    local rate, burst, key = value.requests_per_second, value.burst, value.key
    if type(rate) ~= "number" or not (rate >= 0.001 and rate <= 1000000) then
        return nil
    end
    if burst == nil or burst == cjson.null then
        burst = math.max(1, math.ceil(rate))
    end
    if key == nil or key == cjson.null then
        key = "client"
    end
    if type(burst) ~= "number" or burst % 1 ~= 0 or burst < 1 or burst > 1000000 or not _M.rate_key(key) then
        return nil
    end
    return { rate = rate, burst = burst, key = key }
end

---------------------------------------------------------------------------------------------
-- Entries and the document.

-- A task endpoint: { host, port, strip_prefix, rate_limit (false: none) }, or nil.
function _M.http_entry(id, entry)
    local ok = _M.route_id(id) and _M.is_object(entry) and _M.target_host(entry.host) and _M.port(entry.port)
        and absent_or(entry.task, "string") and absent_or(entry.strip_prefix, "boolean")
    local limit = ok and _M.rate_limit(entry.rate_limit)
    if limit == nil or not ok then
        return nil
    end
    return { host = entry.host, port = entry.port, strip_prefix = entry.strip_prefix ~= false, rate_limit = limit }
end

-- Whether a valid host of `hosts` names the route `name` (how a subdomain route is reached).
local function has_host(hosts, name)
    for host, route in pairs(hosts) do
        if route == name and _M.static_host(host) then
            return true
        end
    end
    return false
end

-- A static route: { prefix, targets, load_balanced, public, members, rate_limit }, or nil.
function _M.static_entry(name, entry, hosts)
    if not (_M.label(name) and _M.is_object(entry)) then
        return nil
    end
    local prefix = entry.prefix == nil and "" or entry.prefix
    local members = entry.members
    if members == cjson.null then
        members = nil
    end
    local ok = type(prefix) == "string" and (entry.targets == nil or _M.is_list(entry.targets))
        and absent_or(entry.load_balanced, "boolean") and absent_or(entry.public, "boolean")
        and (members == nil or is_string_list(members)) and (entry.tasks == nil or is_string_list(entry.tasks))
    local limit = ok and _M.rate_limit(entry.rate_limit)
    if not ok or limit == nil then
        return nil
    end
    if prefix == "" and not has_host(hosts, name) or prefix ~= "" and not _M.route_path(prefix) then
        return nil
    end
    local targets = entry.targets or {}
    for _, raw in ipairs(targets) do
        if not _M.static_target(raw) then
            return nil
        end
    end
    return {
        prefix = prefix,
        targets = targets,
        load_balanced = entry.load_balanced == true,
        public = entry.public == true,
        members = members,
        rate_limit = limit or nil,
    }
end

-- A map of the document: absent (when optional) or an object.
local function map_or_absent(value)
    return value == nil or _M.is_object(value)
end

-- The entries of a decoded document that pass, or nil and why the document is refused:
-- { version, routes = {id = entry}, statics = {name = entry}, paths = {prefix = name},
--   hosts = {host = name}, secure_cookies }.
function _M.parse(doc)
    if not _M.is_object(doc) or type(doc.version) ~= "string" or not _M.is_object(doc.routes) then
        return nil, "not a routing table (version and routes)"
    end
    local static = doc.static == nil and {} or doc.static
    local shape_ok = map_or_absent(doc.tcp) and _M.is_object(static) and map_or_absent(static.routes)
        and map_or_absent(static.paths) and map_or_absent(static.hosts)
        and absent_or(static.secure_cookies, "boolean")
    if not shape_ok then
        return nil, "a section of the routing table has the wrong type"
    end
    local parsed = {
        version = doc.version,
        routes = {},
        statics = {},
        paths = {},
        hosts = {},
        secure_cookies = static.secure_cookies == true,
    }
    for id, entry in pairs(doc.routes) do
        parsed.routes[id] = _M.http_entry(id, entry)
    end
    local hosts = static.hosts or {}
    for name, entry in pairs(static.routes or {}) do
        parsed.statics[name] = _M.static_entry(name, entry, hosts)
    end
    -- Paths and hosts that lead to a route kept above.
    for prefix, name in pairs(static.paths or {}) do
        if _M.route_path(prefix) and parsed.statics[name] then
            parsed.paths[prefix] = name
        end
    end
    for host, name in pairs(hosts) do
        if _M.static_host(host) and parsed.statics[name] then
            parsed.hosts[host] = name
        end
    end
    return parsed
end

-- Decodes and checks the file's text: as `parse`.
function _M.read(raw)
    return _M.parse(json.decode(raw))
end

return _M
