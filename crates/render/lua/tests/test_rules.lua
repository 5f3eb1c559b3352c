-- clearml_rules: the checks routes.json entries pass (pure; the fixtures test covers documents).
local t = require("helper")
local cjson = require("cjson.safe")
local rules = require("clearml_rules")

-- `check(value)` is true exactly for the values `cases` maps to true.
local function accepts(check, cases)
    for value, expected in pairs(cases) do
        t.eq(not not check(value), expected, tostring(value))
    end
end

t.test("route ids follow RouteId", function()
    accepts(rules.route_id, {
        [string.rep("a", 64)] = true,
        [string.rep("a", 65)] = false,
        ["abc__" .. string.rep("e", 64)] = true,
        ["abc__" .. string.rep("e", 65)] = false,
        ["abc___x"] = true, -- the endpoint starts with '_'
        ["abc_x"] = false, -- a single '_' is in the task part
        ["abc__"] = false,
        ["-abc"] = false,
        ["a.b"] = false,
        [12] = false,
    })
    t.no(rules.route_id(nil))
end)

t.test("labels refuse a leading or trailing dash", function()
    accepts(rules.label, { ["de-mo"] = true, ["demo-"] = false, ["-demo"] = false, Demo = false,
        [string.rep("a", 64)] = false })
end)

t.test("route paths follow RoutePath", function()
    accepts(rules.route_path, {
        ["/demo"] = true,
        ["/demo/"] = true,
        ["/services"] = true,
        ["/"] = false,
        ["/a//b"] = false,
        ["/a/../b"] = false,
        ["/Service/x"] = false, -- reserved, in any case
        ["/__clearml_router"] = false,
        demo = false,
    })
end)

t.test("IPv4 addresses are read as Rust reads them", function()
    t.eq(rules.parse_ipv4("10.0.0.255"), { 10, 0, 0, 255 })
    t.eq(rules.parse_ipv4("01.0.0.1"), nil, "leading zero")
    t.eq(rules.parse_ipv4("256.0.0.1"), nil)
    t.eq(rules.parse_ipv4("1.2.3"), nil)
end)

t.test("IPv6 addresses expand to eight groups", function()
    t.eq(rules.parse_ipv6("2001:db8::1"), { 0x2001, 0xdb8, 0, 0, 0, 0, 0, 1 })
    t.eq(rules.parse_ipv6("::ffff:10.0.0.1"), { 0, 0, 0, 0, 0, 0xffff, 0x0a00, 1 })
    t.eq(rules.parse_ipv6("1:2:3:4:5:6:7:8"), { 1, 2, 3, 4, 5, 6, 7, 8 })
    t.eq(rules.parse_ipv6("1:2:3:4:5:6:7::8"), nil, "'::' must stand for a group")
    t.eq(rules.parse_ipv6("1.2.3.4::"), nil, "IPv4 only at the end")
    t.eq(rules.parse_ipv6("12345::"), nil)
end)

t.test("targets pass the SSRF rules with loopback allowed", function()
    accepts(rules.target_host, {
        ["127.0.0.1"] = true, ["::1"] = true, ["10.0.0.1"] = true, ["::ffff:10.0.0.1"] = true,
        ["2002:0a00:0001::1"] = true, ["169.254.169.254"] = false, ["0.0.0.0"] = false, ["224.0.0.1"] = false,
        ["255.255.255.255"] = false, ["100.100.100.200"] = false, ["::"] = false, ["fe80::1"] = false,
        ["ff02::1"] = false, ["::ffff:169.254.1.1"] = false, ["64:ff9b::a9fe:a9fe"] = false,
        ["2002:a9fe:a9fe::1"] = false, ["fd00:ec2::254"] = false, localhost = false, ["[::1]"] = false,
    })
end)

t.test("static targets are '<ip> <port>'", function()
    t.eq({ rules.static_target("10.0.0.1 8080") }, { "10.0.0.1", 8080 })
    t.eq({ rules.static_target("2001:db8::2 00443") }, { "2001:db8::2", 443 })
    t.eq(rules.static_target("10.0.0.1:80"), nil)
    t.eq(rules.static_target("10.0.0.1 0"), nil)
    t.eq(rules.static_target("10.0.0.1 000080"), nil)
end)

t.test("an http entry keeps its prefix only when strip_prefix is false", function()
    t.eq(rules.http_entry("abc", { host = "10.0.0.1", port = 80 }), { host = "10.0.0.1", port = 80, strip_prefix = true, rate_limit = false })
    t.eq(rules.http_entry("abc", { host = "10.0.0.1", port = 80, strip_prefix = false }).strip_prefix, false)
    t.eq(rules.http_entry("abc", { host = "10.0.0.1", port = 80, strip_prefix = "no" }), nil)
    t.eq(rules.http_entry("abc", { host = "10.0.0.1", port = 80.5 }), nil)
end)

t.test("rate limits take serde's defaults and refuse what rate_limit.rs refuses", function()
    t.eq(rules.rate_limit(nil), false)
    t.eq(rules.rate_limit(cjson.null), false)
    t.eq(rules.rate_limit({ requests_per_second = 2.5 }), { rate = 2.5, burst = 3, key = "client" })
    t.eq(rules.rate_limit({ requests_per_second = 1, burst = 5, key = "header:X-Api-Key" }),
        { rate = 1, burst = 5, key = "header:X-Api-Key" })
    for _, bad in ipairs({ { requests_per_second = 0 }, { requests_per_second = 1, burst = 0 },
        { requests_per_second = 1, burst = 2.5 }, { requests_per_second = 1, key = "header:a_b" },
        { requests_per_second = 1, key = "header:" .. string.rep("a", 65) }, { requests_per_second = 1, extra = 1 },
        { 5 }, "fast" }) do
        t.eq(rules.rate_limit(bad), nil, cjson.encode(bad))
    end
    local entry = rules.http_entry("abc", { host = "10.0.0.1", port = 80, rate_limit = { requests_per_second = 4 } })
    t.eq(entry.rate_limit, { rate = 4, burst = 4, key = "client" })
    t.eq(rules.http_entry("abc", { host = "10.0.0.1", port = 80, rate_limit = { requests_per_second = 0 } }), nil)
end)

t.test("a subdomain static route needs a valid host naming it", function()
    local entry = { prefix = "", targets = { "10.0.0.1 80" } }
    t.eq(rules.static_entry("web", entry, {}), nil)
    t.eq(rules.static_entry("web", entry, { ["web-.gw"] = "web" }), nil)
    t.eq(rules.static_entry("web", entry, { ["web.gw"] = "web" }),
        { prefix = "", targets = { "10.0.0.1 80" }, load_balanced = false, public = false })
end)

t.test("a document of the wrong shape is refused with a reason", function()
    local parsed, why = rules.read('{"version": "v", "routes": "x"}')
    t.eq(parsed, nil)
    t.yes(why:find("version and routes", 1, true), why)
    t.eq(rules.read('{"version": "v", "routes": {"a": {"host": "10.0.0.1", "port": 0x50}}}'), nil,
        "hex numbers are not JSON")
    t.eq(rules.read('{"version": "v", "routes": {}, "static": {"secure_cookies": 1}}'), nil)
    t.eq(rules.read('{"version": "v", "routes": {}}').secure_cookies, false)
end)

t.test("documents nested deeper than serde_json allows are refused", function()
    local function nested(depth)
        local lists = depth - 3
        return '{"version":"v","routes":{"abc":{"host":"10.0.0.1","port":80,"extra":'
            .. string.rep("[", lists) .. "0" .. string.rep("]", lists) .. "}}}"
    end
    t.yes(rules.read(nested(127)).routes.abc)
    t.eq(rules.read(nested(128)), nil)
end)

t.done()
