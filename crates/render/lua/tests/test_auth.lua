-- clearml_auth: credentials in, identity headers out, refusals as error pages.
local t = require("helper")
local fake = require("fake_ngx")
local cjson = require("cjson.safe")
local auth = require("clearml_auth")
local login = require("login")

t.test("pure helpers: bearer tokens, cookie stripping, header-safe values", function()
    t.eq(auth.bearer_token("Bearer abc.def-_=  "), "abc.def-_=")
    t.eq(auth.bearer_token("Basic abc"), nil)
    t.eq(auth.bearer_token("Bearer a b"), nil)
    t.eq(auth.bearer_token(nil), nil)
    t.eq(auth.without_cookie("a=1; clearml_token=x;b=2", "clearml_token"), "a=1; b=2")
    t.eq(auth.without_cookie("clearml_token=x", "clearml_token"), nil)
    t.eq(auth.header_safe("ali\r\nce"), "alice")
    t.eq(#auth.header_safe(string.rep("x", 300)), 256)
end)

t.test("disabled: every request passes, without ClearML credentials", function()
    fake.new_request({})
    t.eq(fake.run(auth.check), nil)
    t.no(auth.enabled())
    local token = login.token(login.user("u1", "alice"))
    fake.new_request({
        http_cookie = "clearml_token_basic=" .. token .. "; theirs=1",
        http_authorization = "Bearer " .. token,
        headers = { Cookie = "clearml_token_basic=" .. token .. "; theirs=1", Authorization = "Bearer " .. token },
    })
    t.eq(fake.run(auth.check), nil)
    t.eq(fake.request.headers, { Cookie = "theirs=1" })
end)

t.test("only JWTs with ClearML's identity claim count as ClearML tokens", function()
    t.yes(auth.is_clearml_token(login.token(login.user("u1", "alice"))))
    t.no(auth.is_clearml_token("sk-abc"))
    t.no(auth.is_clearml_token("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"))
    t.no(auth.is_clearml_token(nil))
end)

login.enable(auth)

t.test("no credentials: 401 JSON with the login URL", function()
    fake.new_request({ request_uri = "/service/x/", scheme = "http", http_host = "gw" })
    local ended = fake.run(auth.check)
    t.eq(ended.status, 401)
    local body = cjson.decode(fake.request.body)
    t.eq({ body.error, body.login_url }, { "unauthenticated", "https://app.example/login" })
    t.eq(ngx.header["WWW-Authenticate"], 'Bearer realm="clearml"')
end)

t.test("a valid bearer token: identity set, credentials removed", function()
    local token = login.token(login.user("u1", "alice"))
    fake.new_request({
        http_authorization = "Bearer " .. token,
        http_cookie = "theirs=1; clearml_token=" .. token,
        headers = { Authorization = "Bearer " .. token, Cookie = "theirs=1; clearml_token=" .. token },
    })
    t.eq(fake.run(auth.check), nil)
    t.eq({ ngx.var.clearml_user_id, ngx.var.clearml_user_name, ngx.var.clearml_company_id }, { "u1", "alice", "c1" })
    t.eq(fake.request.headers, { Cookie = "theirs=1" })
end)

t.test("the cookie authenticates; the app's own Authorization passes untouched", function()
    local token = login.token(login.user("u1", "alice"))
    fake.new_request({
        cookie_clearml_token = token,
        http_cookie = "clearml_token=" .. token,
        http_authorization = "Bearer sk-own-key",
        headers = { Cookie = "clearml_token=" .. token, Authorization = "Bearer sk-own-key" },
    })
    t.eq(fake.run(auth.check), nil)
    t.eq(ngx.var.clearml_user_id, "u1")
    t.eq(fake.request.headers, { Authorization = "Bearer sk-own-key" })
end)

t.test("the gateway header authenticates and is removed", function()
    local token = login.token(login.user("u1", "alice"))
    fake.new_request({
        http_x_clearml_gateway_token = token,
        http_authorization = "Bearer sk-own-key",
        headers = { ["X-ClearML-Gateway-Token"] = token, Authorization = "Bearer sk-own-key" },
    })
    t.eq(fake.run(auth.check), nil)
    t.eq(ngx.var.clearml_user_id, "u1")
    t.eq(fake.request.headers, { Authorization = "Bearer sk-own-key" })
    fake.new_request({ http_authorization = "Bearer sk-own-key" })
    t.eq(fake.run(auth.check).status, 401, "an app key alone is no login")
end)

t.test("a value not shaped like a ClearML login is refused without a check or a cache entry", function()
    fake.flush()
    local misses = auth.stats().cache_misses
    fake.new_request({ http_cookie = "clearml_token=random", cookie_clearml_token = "random" })
    t.eq(fake.run(auth.check).status, 401)
    t.yes(fake.request.body:find("not a ClearML login token", 1, true), fake.request.body)
    t.eq(auth.stats().cache_misses, misses)
    fake.flush()
end)

t.test("failed logins are limited per client address", function()
    fake.flush()
    local bad = login.token(login.user("u1", "a"), 600, "other key")
    for i = 1, 30 do
        fake.new_request({ http_authorization = "Bearer " .. bad .. string.rep("A", i % 2), remote_addr = "192.0.2.9" })
        t.eq(fake.run(auth.check).status, 401)
    end
    local good = login.token(login.user("u1", "alice"))
    fake.new_request({ http_authorization = "Bearer " .. good, remote_addr = "192.0.2.9" })
    t.eq(fake.run(auth.check).status, 429)
    fake.new_request({ http_authorization = "Bearer " .. good, remote_addr = "192.0.2.10" })
    t.eq(fake.run(auth.check), nil, "another client is not affected")
    fake.flush()
end)

t.test("negative decisions take a bounded share of the cache", function()
    fake.flush()
    local settings = os.tmpname()
    fake.write_file(settings, cjson.encode({ enabled = true, mode = "local", cookie_name = login.cookie,
        company = login.company, cache_ttl = 60, negative_ttl = 60, stale_ttl = 300, negative_entries_max = 3 }))
    local key = os.tmpname()
    fake.write_file(key, ngx.encode_base64(login.key))
    auth.init(settings, key)
    for i = 1, 8 do
        local bad = login.token(login.user("u" .. i, "a"), 600, "other key")
        fake.new_request({ http_authorization = "Bearer " .. bad, remote_addr = "192.0.2." .. i })
        t.eq(fake.run(auth.check).status, 401)
    end
    local entries = 0
    for _, k in ipairs(ngx.shared.clearml_auth:get_keys(0)) do
        entries = entries + (k:sub(1, 2) == "t:" and 1 or 0)
    end
    t.eq(entries, 3)
    os.remove(settings)
    os.remove(key)
    login.enable(auth)
    fake.flush()
end)

t.test("a token of another workspace: 403", function()
    fake.new_request({ http_cookie = "clearml_token=x", cookie_clearml_token = login.token(login.user("u1", "a", "c2")) })
    t.eq(fake.run(auth.check).status, 403)
end)

t.test("a bad token: 401 naming the reason; the decision is cached", function()
    local token = login.token(login.user("u1", "a"), 600, "other key")
    local misses = auth.stats().cache_misses
    for _ = 1, 2 do
        fake.new_request({ http_authorization = "Bearer " .. token })
        t.eq(fake.run(auth.check).status, 401)
        t.yes(fake.request.body:find("bad token signature", 1, true), fake.request.body)
    end
    t.eq(auth.stats().cache_misses, misses + 1)
end)

t.done()
