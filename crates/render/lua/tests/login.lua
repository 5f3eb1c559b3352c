-- Logins for tests: sets the auth module up in local mode (HS256 with a known key) and mints
-- tokens for it.
local cjson = require("cjson.safe")
local fake = require("fake_ngx")
local jwt = require("clearml_jwt")

local _M = { key = "test-signing-key", company = "c1", cookie = "clearml_token" }

local function b64url(s)
    return (ngx.encode_base64(s):gsub("=+$", ""):gsub("+", "-"):gsub("/", "_"))
end

-- Initialises `auth` enabled, in local mode, for company `_M.company`.
function _M.enable(auth)
    local settings, key = os.tmpname(), os.tmpname()
    fake.write_file(settings, cjson.encode({
        enabled = true, mode = "local", cookie_name = _M.cookie, company = _M.company, login_url = "https://app.example/login",
        cache_ttl = 60, negative_ttl = 5, stale_ttl = 300,
    }))
    fake.write_file(key, ngx.encode_base64(_M.key) .. "\n")
    auth.init(settings, key)
    os.remove(settings)
    os.remove(key)
end

-- A token for `identity` expiring in `ttl` seconds (negative: expired), signed with `key`.
function _M.token(identity, ttl, key, alg)
    local head = b64url(cjson.encode({ alg = alg or "HS256", typ = "JWT" }))
    local body = b64url(cjson.encode({ identity = identity, exp = ngx.time() + (ttl or 600) }))
    local signature = b64url(jwt.hmac_sha256(key or _M.key, head .. "." .. body))
    return head .. "." .. body .. "." .. signature
end

function _M.user(id, name, company)
    return { user = id, user_name = name, company = company or _M.company }
end

return _M
