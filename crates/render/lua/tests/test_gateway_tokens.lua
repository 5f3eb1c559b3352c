-- clearml_gateway_tokens: gateway tokens checked with the router's key, revocable without a reload.
local t = require("helper")
local fake = require("fake_ngx")
local cjson = require("cjson.safe")
local jwt = require("clearml_jwt")
local auth = require("clearml_auth")
local login = require("login")
local tokens = require("clearml_gateway_tokens")

local KEY = "gateway-test-key-0123456789abcdef"

local function b64url(s)
    return (ngx.encode_base64(s):gsub("=+$", ""):gsub("+", "-"):gsub("/", "_"))
end

local function mint(claims, key)
    local p64 = b64url(cjson.encode(claims))
    return "cgw1." .. p64 .. "." .. b64url(jwt.hmac_sha256(key or KEY, "cgw1." .. p64))
end

local dir = os.tmpname()
os.remove(dir)
os.execute("mkdir -p " .. dir)
local function publish(revoked)
    fake.write_file(dir .. "/clearml_gateway.key", ngx.encode_base64(KEY) .. "\n")
    fake.write_file(dir .. "/clearml_gateway_tokens.json", cjson.encode({ revoked = revoked }))
    tokens.init(dir)
end
publish({})

local now = ngx.time()
local user = { id = "t1", kind = "user", user = "u1", name = "alice", exp = now + 600 }
local endpoint = { id = "t2", kind = "endpoint", name = "ci bot", endpoints = { "task-a", "web" }, exp = now + 600 }

t.test("valid, expired, forged, malformed and revoked tokens", function()
    t.eq(tokens.verify(mint(user), now).user, "u1")
    t.eq(select(2, tokens.verify(mint({ id = "t3", kind = "user", user = "u1", exp = now - 1 }), now)), "gateway token expired")
    t.eq(select(2, tokens.verify(mint(user, "other key"), now)), "bad gateway token signature")
    t.eq(select(2, tokens.verify("cgw1.abc", now)), "malformed gateway token")
    t.eq(select(2, tokens.verify(mint({ id = "t4", kind = "admin", exp = now + 60 }), now)), "unknown gateway token kind")
    publish({ "t1" })
    t.eq(select(2, tokens.verify(mint(user), now)), "gateway token revoked")
    publish({})
end)

t.test("endpoint tokens grant their endpoints only", function()
    local claims = tokens.verify(mint(endpoint), now)
    t.yes(tokens.grants(claims, "task-a"))
    t.no(tokens.grants(claims, "task-b"))
    t.no(tokens.grants(claims, nil))
end)

t.test("in the auth check: user tokens act as the user; endpoint tokens get their endpoints", function()
    login.enable(auth)
    tokens.init(dir)
    fake.new_request({ http_authorization = "Bearer " .. mint(user), headers = { Authorization = "Bearer " .. mint(user) } })
    t.eq(fake.run(auth.check, "task-b"), nil)
    t.eq({ ngx.var.clearml_user_id, ngx.var.clearml_user_name, ngx.var.clearml_company_id }, { "u1", "alice", "c1" })
    t.eq(fake.request.headers, {}, "the token is removed")
    fake.new_request({ http_x_clearml_gateway_token = mint(endpoint) })
    t.eq(fake.run(auth.check, "task-a"), nil)
    t.eq(ngx.var.clearml_user_id, "gateway-token:t2")
    t.yes(ngx.ctx.clearml_endpoint_grant)
    fake.new_request({ http_x_clearml_gateway_token = mint(endpoint) })
    t.eq(fake.run(auth.check, "task-b").status, 403)
    fake.new_request({ http_x_clearml_gateway_token = mint(endpoint, "forged") })
    t.eq(fake.run(auth.check, "task-a").status, 401)
end)

os.execute("rm -rf " .. dir)
t.done()
