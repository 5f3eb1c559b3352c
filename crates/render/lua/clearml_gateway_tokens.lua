-- Gateway access tokens, minted by the router's operator API and checked here with no call to
-- ClearML: `cgw1.<payload>.<signature>`, the payload base64url JSON
-- `{id, kind = "user"|"endpoint", user, name, endpoints, exp}`, the signature HMAC-SHA256 of
-- `cgw1.<payload>` with the router's key. The router writes the key (0600) and the revoked ids
-- into the Lua dir; each worker re-reads them at most once a second, so a revocation needs no
-- reload.

local cjson = require("cjson.safe")
local jwt = require("clearml_jwt")

local _M = {}

local PREFIX = "cgw1."
local KEY_FILE = "clearml_gateway.key"
local STATE_FILE = "clearml_gateway_tokens.json"

local dir = nil
local state = { key = nil, revoked = {}, next_check = 0 }

-- A whole file, or nil (also used by the auth module for its settings).
function _M.read_file(path)
    local f = io.open(path, "rb")
    if not f then
        return nil
    end
    local raw = f:read("*a")
    f:close()
    return raw
end

local read_file = _M.read_file

-- `lua_dir`: where the router writes the key and the revocation list.
function _M.init(lua_dir)
    dir = lua_dir
    state.next_check = 0
end

local function refresh()
    local now = ngx.now()
    if not dir or now < state.next_check then
        return
    end
    state.next_check = now + 1
    local key = read_file(dir .. "/" .. KEY_FILE)
    state.key = key and ngx.decode_base64((key:gsub("%s", ""))) or nil
    local doc = cjson.decode(read_file(dir .. "/" .. STATE_FILE) or "")
    local revoked = {}
    if type(doc) == "table" and type(doc.revoked) == "table" then
        for _, id in ipairs(doc.revoked) do
            revoked[tostring(id)] = true
        end
    end
    state.revoked = revoked
end

function _M.is_gateway_token(token)
    return type(token) == "string" and token:sub(1, #PREFIX) == PREFIX
end

-- Claims of a valid token, or nil and the reason.
function _M.verify(token, now)
    refresh()
    if not state.key or #state.key == 0 then
        return nil, "gateway tokens are not enabled"
    end
    local p64, s64 = token:match("^cgw1%.([%w%-_]+)%.([%w%-_]+)$")
    local signature = s64 and jwt.b64url_decode(s64)
    if not signature then
        return nil, "malformed gateway token"
    end
    local expected = jwt.hmac_sha256(state.key, PREFIX .. p64)
    -- Compare digests of both: no early exit on the first differing byte of the signature.
    if not expected or ngx.sha1_bin(expected) ~= ngx.sha1_bin(signature) then
        return nil, "bad gateway token signature"
    end
    local claims = cjson.decode(jwt.b64url_decode(p64) or "")
    if type(claims) ~= "table" or type(claims.id) ~= "string" or type(claims.exp) ~= "number" then
        return nil, "malformed gateway token"
    end
    if claims.exp <= now then
        return nil, "gateway token expired"
    end
    if state.revoked[claims.id] then
        return nil, "gateway token revoked"
    end
    if claims.kind == "user" and type(claims.user) == "string" and claims.user ~= "" then
        return claims
    end
    if claims.kind == "endpoint" and type(claims.endpoints) == "table" then
        return claims
    end
    return nil, "unknown gateway token kind"
end

-- Whether endpoint-token claims grant `route` (a /service route id or a static route name).
function _M.grants(claims, route)
    for _, granted in ipairs(claims.endpoints or {}) do
        if granted == route then
            return true
        end
    end
    return false
end

return _M
