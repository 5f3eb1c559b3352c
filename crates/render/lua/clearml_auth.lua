-- ClearML login check, run inside the proxy for every request to a task endpoint.
--
-- Credentials: the ClearML login cookie (browsers) or `Authorization: Bearer <token>` (scripts).
-- Remote mode (default): the token is checked by ClearML itself (`users.get_current_user` through
-- an internal subrequest), so logouts are seen. Local mode (the server's token secret is
-- configured): HS256 signature and `exp` are checked here, with no network per request, but a
-- logout is not seen until the token expires. Decisions are cached in a shared dict keyed by a
-- hash of the token (see "Decisions" below for how long and what a stale one does).
-- The task never sees the credentials: the cookie and Bearer header are removed, and the
-- verified identity is passed in headers the proxy sets itself.

local cjson = require("cjson.safe")
local jwt = require("clearml_jwt")
local pages = require("clearml_pages")

local _M = {}

local cache = ngx.shared.clearml_auth
local settings = { enabled = false }
local secret = nil

-- Identity values become request headers: no control characters, bounded length.
function _M.header_safe(value)
    local s = tostring(value or ""):gsub("%c", "")
    return s:sub(1, 256)
end

local function read_file(path)
    local f = io.open(path, "rb")
    if not f then
        return nil
    end
    local raw = f:read("*a")
    f:close()
    return raw
end

-- init_by_lua: settings come as JSON data written by the router, never as Lua source.
function _M.init(settings_path, secret_path)
    local doc = cjson.decode(read_file(settings_path) or "")
    if type(doc) ~= "table" then
        -- Fail closed: without readable settings every request is refused.
        settings = { enabled = true, broken = true }
        ngx.log(ngx.ERR, "clearml auth: cannot read ", settings_path, "; refusing all requests")
        return
    end
    settings = doc
    if settings.mode == "local" then
        local key = read_file(secret_path)
        secret = key and ngx.decode_base64((key:gsub("%s", ""))) or nil
        if not secret or #secret == 0 then
            settings.broken = true
            ngx.log(ngx.ERR, "clearml auth: local mode without a readable key; refusing all requests")
        end
    end
end

function _M.enabled()
    return settings.enabled == true
end

-- Counters for the router's metrics: decisions served from the cache and checks made.
function _M.stats()
    return { cache_hits = cache:get("stat:hits") or 0, cache_misses = cache:get("stat:misses") or 0 }
end

---------------------------------------------------------------------------------------------
-- Local mode: the token's signature and expiry are checked here (clearml_jwt).

-- Returns identity, or nil and the reason.
local function verify_locally(token)
    local claims, reason = jwt.verify(token, secret, ngx.time())
    if not claims then
        return nil, reason
    end
    local id = claims.identity
    return {
        user = _M.header_safe(id.user),
        name = _M.header_safe(id.user_name),
        company = _M.header_safe(id.company),
        exp = claims.exp,
    }
end

---------------------------------------------------------------------------------------------
-- Remote mode: ask ClearML who this token belongs to.

-- ClearML's 401 subcodes that say the token itself is bad (no credentials, invalid credentials,
-- invalid token, blocked token). Any other failure says nothing about the token.
local INVALID_SUBCODES = { [20] = true, [22] = true, [30] = true, [31] = true }

-- An answer of users.get_current_user as a decision: identity; or nil, reason, kind
-- ("invalid": the token is bad; "unavailable": ClearML did not say).
function _M.classify(status, body)
    local doc = cjson.decode(body or "")
    local meta = type(doc) == "table" and type(doc.meta) == "table" and doc.meta or {}
    if status == 401 and INVALID_SUBCODES[tonumber(meta.result_subcode)] then
        return nil, "ClearML refused the token", "invalid"
    end
    if status ~= 200 then
        return nil, "ClearML answered " .. tostring(status), "unavailable"
    end
    local user = type(doc) == "table" and type(doc.data) == "table" and doc.data.user
    if type(user) ~= "table" then
        return nil, "unexpected answer from ClearML", "unavailable"
    end
    local company = user.company
    if type(company) == "table" then
        company = company.id
    end
    return { user = _M.header_safe(user.id), name = _M.header_safe(user.name), company = _M.header_safe(company) }
end

-- In a request: an internal subrequest (the proxy's own TLS and timeouts, see the template).
local function verify_remotely(token)
    local res = ngx.location.capture("/__clearml_auth/validate", {
        method = ngx.HTTP_POST,
        vars = { clearml_auth_token = token },
    })
    return _M.classify(res.status, res.body)
end

-- The body of a chunked HTTP/1.1 answer.
local function dechunk(raw)
    local out, pos = {}, 1
    while true do
        local size_end = raw:find("\r\n", pos, true)
        local size = size_end and tonumber(raw:sub(pos, size_end - 1):match("^%x+"), 16)
        if not size or size == 0 then
            return table.concat(out)
        end
        out[#out + 1] = raw:sub(size_end + 2, size_end + 1 + size)
        pos = size_end + 4 + size
    end
end

-- Outside a request (a timer cannot make subrequests): one HTTP/1.1 call on a cosocket.
-- Returns status, body; or nil and the error.
function _M.call_by_socket(api_url, token)
    local scheme, host, port, prefix = (api_url or ""):match("^(https?)://([^/:]+):?(%d*)(.*)$")
    if not scheme then
        return nil, "no ClearML API URL"
    end
    port = tonumber(port) or (scheme == "https" and 443 or 80)
    local sock = ngx.socket.tcp()
    sock:settimeouts(3000, 5000, 5000)
    local ok, err = sock:connect(host, port)
    if ok and scheme == "https" then
        ok, err = sock:sslhandshake(nil, host, true)
    end
    if not ok then
        sock:close()
        return nil, err
    end
    local request = "POST " .. prefix:gsub("/+$", "") .. "/users.get_current_user HTTP/1.1\r\nHost: " .. host
        .. "\r\nAuthorization: Bearer " .. token .. "\r\nContent-Type: application/json\r\nContent-Length: 2"
        .. "\r\nConnection: close\r\n\r\n{}"
    ok, err = sock:send(request)
    local raw = ok and sock:receive("*a")
    sock:close()
    if not raw then
        return nil, err or "no answer"
    end
    local head_end = raw:find("\r\n\r\n", 1, true)
    local status = tonumber(raw:match("^HTTP/%d%.%d (%d%d%d)"))
    if not head_end or not status then
        return nil, "unreadable answer"
    end
    local head, body = raw:sub(1, head_end), raw:sub(head_end + 4)
    if head:lower():find("transfer%-encoding:%s*chunked") then
        body = dechunk(body)
    end
    return status, body
end

---------------------------------------------------------------------------------------------
-- Decisions, cached in the shared dict under a hash of the token:
--   fresh (before fresh_until): served as is;
--   confirmed and stale (until the entry expires, stale_ttl at most): served at once while one
--     background re-check per token runs (a lock in the dict), so a slow ClearML slows nobody
--     who is logged in;
--   never past the token's own `exp`: the entry's lifetime is capped at it.
-- Only an answer that says the token is invalid turns a confirmed login into a refusal.

local function cache_key(token)
    return "t:" .. ngx.encode_base64(ngx.sha1_bin(token))
end

-- The token's `exp` claim, read without verifying the signature: it only ever shortens a cache
-- lifetime, so a forged value cannot extend access.
function _M.token_exp(token)
    local payload = token:match("^[^.]+%.([^.]+)%.")
    local claims = payload and cjson.decode(jwt.b64url_decode(payload) or "")
    return type(claims) == "table" and tonumber(claims.exp) or nil
end

-- How long a background re-check may run before another request may start one, and how long
-- after a failed one the next may start.
local RECHECK_LOCK_SECONDS = 10
local RECHECK_RETRY_SECONDS = 1

-- Stores a decision; a confirmed login is kept stale_ttl at most, never past `exp`.
local function remember(key, identity, reason, exp, now)
    local ttl = identity and settings.cache_ttl or settings.negative_ttl
    local keep = identity and math.max(settings.stale_ttl or 0, ttl) or ttl
    if exp then
        ttl = math.min(ttl, exp - now)
        keep = math.min(keep, exp - now)
    end
    if keep > 0 then
        cache:set(key, cjson.encode({
            ok = identity ~= nil,
            identity = identity,
            reason = reason,
            fresh_until = now + ttl,
            expires_at = now + keep,
        }), keep)
    else
        cache:delete(key)
    end
end

-- Timer body: re-checks a confirmed login and updates the cache; "unavailable" changes nothing.
function _M.recheck(premature, token, key)
    if premature then
        return
    end
    local status, body = _M.call_by_socket(settings.api_url, token)
    local identity, reason, kind
    if status then
        identity, reason, kind = _M.classify(status, body)
    else
        reason, kind = body, "unavailable"
    end
    if kind == "unavailable" then
        -- The next re-check may start a little later: one per token per second while ClearML fails.
        ngx.log(ngx.WARN, "clearml auth: background re-check failed (", reason, "); the confirmed login stays")
        cache:set("lock:" .. key, true, RECHECK_RETRY_SECONDS)
        return
    end
    remember(key, identity, reason, _M.token_exp(token), ngx.now())
    cache:delete("lock:" .. key)
end

-- Decision for a token: identity, or nil + reason + kind ("invalid" or "unavailable").
local function decide(token)
    local key = cache_key(token)
    local now = ngx.now()
    local cached = cjson.decode(cache:get(key) or "")
    if type(cached) == "table" and (cached.expires_at or math.huge) <= now then
        cached = nil
    end
    if type(cached) == "table" and cached.fresh_until > now then
        cache:incr("stat:hits", 1, 0)
        if cached.ok then
            return cached.identity
        end
        return nil, cached.reason, "invalid"
    end
    if type(cached) == "table" and cached.ok and settings.mode ~= "local" then
        -- Stale but confirmed: answer now, re-check in the background (one at a time per token).
        cache:incr("stat:hits", 1, 0)
        if cache:add("lock:" .. key, true, RECHECK_LOCK_SECONDS) then
            local ok, err = ngx.timer.at(0, _M.recheck, token, key)
            if not ok then
                cache:delete("lock:" .. key)
                ngx.log(ngx.ERR, "clearml auth: cannot start a background re-check: ", err)
            end
        end
        return cached.identity
    end
    cache:incr("stat:misses", 1, 0)
    local identity, reason, kind
    if settings.mode == "local" then
        identity, reason = verify_locally(token)
        kind = "invalid"
    else
        identity, reason, kind = verify_remotely(token)
    end
    if kind == "unavailable" then
        return nil, reason, "unavailable"
    end
    remember(key, identity, reason, identity and identity.exp or _M.token_exp(token), now)
    if identity then
        return identity
    end
    return nil, reason, "invalid"
end

-- The token of an `Authorization: Bearer <token>` header, if it is one.
function _M.bearer_token(header)
    if type(header) ~= "string" then
        return nil
    end
    return header:match("^[Bb]earer%s+([%w%-_%.=]+)%s*$")
end

local function cookie_token()
    local value = ngx.var["cookie_" .. settings.cookie_name]
    if value and value:match("^[%w%-_%.=]+$") then
        return value
    end
    return nil
end

-- A Cookie header without the cookie `name`; nil if nothing is left.
function _M.without_cookie(cookies, name)
    local kept = {}
    for part in cookies:gmatch("[^;]+") do
        if part:match("^%s*([^=]+)=") ~= name then
            kept[#kept + 1] = part:gsub("^%s+", "")
        end
    end
    return #kept > 0 and table.concat(kept, "; ") or nil
end

-- Removes the ClearML cookie from the Cookie header, keeping the task's own cookies.
local function strip_credentials()
    local cookies = ngx.var.http_cookie
    if cookies then
        local kept = _M.without_cookie(cookies, settings.cookie_name)
        if kept then
            ngx.req.set_header("Cookie", kept)
        else
            ngx.req.clear_header("Cookie")
        end
    end
    local authorization = ngx.var.http_authorization
    if authorization and authorization:match("^[Bb]earer%s") then
        ngx.req.clear_header("Authorization")
    end
end

local function refuse(status, code, title, message, with_login)
    local login_html, login_json
    if with_login and settings.login_url and settings.login_url ~= "" then
        local here = ngx.var.scheme .. "://" .. (ngx.var.http_host or "") .. ngx.var.request_uri
        local href = settings.login_url .. "?redirect=" .. ngx.escape_uri(here)
        login_html = "<p><a href=\"" .. pages.html_escape(href) .. "\">Log in to ClearML</a>, then reload this page.</p>"
        login_json = { login_url = settings.login_url }
    end
    if status == 401 and not pages.wants_html() then
        ngx.header["WWW-Authenticate"] = 'Bearer realm="clearml"'
    end
    return pages.send(status, code, title, message, login_html, login_json)
end

-- access phase: lets the request through with identity headers set, or answers it.
function _M.check()
    if not settings.enabled then
        return true
    end
    if settings.broken then
        return refuse(503, "auth_unavailable", "Gateway misconfigured",
            "The gateway cannot check logins (its authentication settings are unreadable).", false)
    end
    if not settings.company or settings.company == "" then
        return refuse(503, "auth_unavailable", "Gateway starting",
            "The gateway has not learned its ClearML workspace yet. Retry in a moment.", false)
    end
    local token = _M.bearer_token(ngx.var.http_authorization) or cookie_token()
    if not token or token == "" then
        return refuse(401, "unauthenticated", "Login required",
            "This endpoint belongs to a ClearML task. Log in to ClearML to open it.", true)
    end
    local identity, reason, kind = decide(token)
    if not identity then
        if kind == "unavailable" then
            ngx.log(ngx.ERR, "clearml auth: cannot check a login: ", reason)
            return refuse(503, "auth_unavailable", "Cannot check your login",
                "ClearML cannot be reached to check your login. Retry in a moment.", false)
        end
        return refuse(401, "unauthenticated", "Login required",
            "Your ClearML login is not valid (" .. reason .. "). Log in again.", true)
    end
    if identity.company ~= settings.company then
        return refuse(403, "forbidden", "Not your workspace",
            "This endpoint belongs to another ClearML workspace.", false)
    end
    strip_credentials()
    ngx.var.clearml_user_id = identity.user
    ngx.var.clearml_user_name = identity.name
    ngx.var.clearml_company_id = identity.company
    return true
end

return _M
