-- ClearML login check, run inside the proxy for every request to a task endpoint.
--
-- Credentials, first found wins: the `X-ClearML-Gateway-Token` header, the ClearML login cookie
-- (browsers), then `Authorization: Bearer <token>` when the token is a ClearML login (a JWT with
-- ClearML's `identity` claim) or a gateway token (clearml_gateway_tokens, checked here without
-- ClearML). Any other Authorization is the app's own and passes untouched, so a client logged in
-- by cookie or header can still send e.g. `Bearer sk-...` to a model server.
-- Remote mode (default): the token is checked by ClearML itself (`users.get_current_user` through
-- an internal subrequest), so logouts are seen. Local mode (the server's token secret is
-- configured): HS256 signature and `exp` are checked here, with no network per request, but a
-- logout is not seen until the token expires. Decisions are cached in a shared dict keyed by a
-- hash of the token (see "Decisions" below for how long and what a stale one does).
-- The task never sees ClearML credentials, whatever the route and even with authentication off:
-- `strip_credentials` removes the login cookie, the gateway header and a ClearML Bearer token; the
-- verified identity is passed in headers the proxy sets itself. Failed logins are limited per
-- client address, and negative decisions take a bounded share of the cache.

local cjson = require("cjson.safe")
local lrucache = require("resty.lrucache")
local gateway_tokens = require("clearml_gateway_tokens")
local jwt = require("clearml_jwt")
local pages = require("clearml_pages")

local _M = {}

local cache = ngx.shared.clearml_auth
local settings = { enabled = false }
local secret = nil

-- Per-worker memos. Reading a 600-byte JWT with Lua patterns and decoding its payload costs tens
-- of microseconds, and every request of a logged-in client carries the same few strings, so what
-- a header value is (a pure function of the string) is remembered, and so is a fresh login
-- decision, until the moment the shared cache itself would stop calling it fresh.
local MEMO_ENTRIES = 4096
local bearer_memo, shape_memo, decision_memo

function _M.reset_worker_memos()
    bearer_memo = lrucache.new(MEMO_ENTRIES)
    shape_memo = lrucache.new(MEMO_ENTRIES)
    decision_memo = lrucache.new(MEMO_ENTRIES)
end
_M.reset_worker_memos()

-- `compute(key)` through `memo`; `false` answers are remembered too (nil never is).
local function memoized(memo, key, compute)
    local known = memo:get(key)
    if known == nil then
        known = compute(key)
        memo:set(key, known)
    end
    return known
end

-- Identity values become request headers: no control characters, bounded length.
function _M.header_safe(value)
    local s = tostring(value or ""):gsub("%c", "")
    return s:sub(1, 256)
end

local read_file = gateway_tokens.read_file

-- init_by_lua: settings come as JSON data written by the router, never as Lua source.
-- `recheck_url`: where background re-checks ask (the proxy's own control listener, which passes
-- the question to ClearML); without it they ask ClearML's URL directly.
function _M.init(settings_path, secret_path, recheck_url)
    local doc = cjson.decode(read_file(settings_path) or "")
    if type(doc) ~= "table" then
        -- Fail closed: without readable settings every request is refused.
        settings = { enabled = true, broken = true }
        ngx.log(ngx.ERR, "clearml auth: cannot read ", settings_path, "; refusing all requests")
        return
    end
    settings = doc
    settings.recheck_url = recheck_url
    gateway_tokens.init(settings_path:match("^(.*)/[^/]*$") or ".")
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

-- Failed logins: at most `failed_login_limit` per client address per `failed_login_window`
-- seconds (then 429 without asking ClearML), so random tokens cannot flood ClearML or the cache.

local function failure_key()
    local window = settings.failed_login_window or 60
    return "fail:" .. (ngx.var.remote_addr or "") .. ":" .. math.floor(ngx.now() / window), window
end

function _M.too_many_failures()
    local key = failure_key()
    return (cache:get(key) or 0) >= (settings.failed_login_limit or 30)
end

function _M.count_failure()
    local key, window = failure_key()
    cache:add(key, 0, window)
    cache:incr(key, 1, 0)
end

-- Whether one more negative decision may be cached: at most `negative_entries_max` per
-- negative TTL window, so failed logins cannot evict the positive ones.
local function negative_slot()
    local ttl = math.max(settings.negative_ttl or 5, 1)
    local key = "negcount:" .. math.floor(ngx.now() / ttl)
    cache:add(key, 0, 2 * ttl)
    return (cache:incr(key, 1, 0) or 0) <= (settings.negative_entries_max or 10000)
end

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
    -- Negative decisions take a bounded share of the dict (a flood of bad tokens evicts no login).
    if keep > 0 and (identity or negative_slot()) then
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
    local status, body = _M.call_by_socket(settings.recheck_url or settings.api_url, token)
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
    local now = ngx.now()
    local memo = decision_memo:get(token)
    if memo and memo.valid_until > now then
        cache:incr("stat:hits", 1, 0)
        if memo.ok then
            return memo.identity
        end
        return nil, memo.reason, "invalid"
    end
    local key = cache_key(token)
    local cached = cjson.decode(cache:get(key) or "")
    if type(cached) == "table" and (cached.expires_at or math.huge) <= now then
        cached = nil
    end
    if type(cached) == "table" and cached.fresh_until > now then
        cache:incr("stat:hits", 1, 0)
        cached.valid_until = math.min(cached.fresh_until, cached.expires_at or math.huge)
        decision_memo:set(token, cached)
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

local function parse_bearer(header)
    return header:match("^[Bb]earer%s+([%w%-_%.=]+)%s*$") or false
end

-- The token of an `Authorization: Bearer <token>` header, if it is one.
function _M.bearer_token(header)
    if type(header) ~= "string" then
        return nil
    end
    return memoized(bearer_memo, header, parse_bearer) or nil
end

-- True for a ClearML login token (a JWT whose payload has ClearML's `identity` claim) or a
-- gateway token: only those are taken from (and removed from) Authorization; an app's own keys
-- and JWTs are left alone.
local function shaped_like_clearml_token(token)
    if gateway_tokens.is_gateway_token(token) then
        return true
    end
    local payload = token:match("^[%w%-_]+%.([%w%-_]+)%.[%w%-_]*$")
    local raw = payload and jwt.b64url_decode(payload)
    local claims = raw and cjson.decode(raw)
    return type(claims) == "table" and type(claims.identity) == "table"
end

function _M.is_clearml_token(token)
    if type(token) ~= "string" then
        return false
    end
    return memoized(shape_memo, token, shaped_like_clearml_token)
end

local GATEWAY_HEADER = "X-ClearML-Gateway-Token"

local function cookie_name()
    return settings.cookie_name or "clearml_token_basic"
end

local function cookie_token()
    local value = ngx.var["cookie_" .. cookie_name()]
    if value and value:match("^[%w%-_%.=]+$") then
        return value
    end
    return nil
end

-- The credential of this request: the token, or nil. Order: gateway header, cookie, ClearML Bearer.
function _M.credential()
    local header = ngx.var.http_x_clearml_gateway_token
    if header and header ~= "" then
        return header:match("^%s*([%w%-_%.=]+)%s*$") or ""
    end
    local token = cookie_token()
    if token then
        return token
    end
    token = _M.bearer_token(ngx.var.http_authorization)
    if _M.is_clearml_token(token) then
        return token
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

-- Removes every ClearML credential, keeping the app's own cookies and Authorization. Runs for
-- every route, public ones and authentication off included.
function _M.strip_credentials()
    local cookies = ngx.var.http_cookie
    if cookies then
        local kept = _M.without_cookie(cookies, cookie_name())
        if not kept then
            ngx.req.clear_header("Cookie")
        elseif kept ~= cookies then
            ngx.req.set_header("Cookie", kept)
        end
    end
    if ngx.var.http_x_clearml_gateway_token then
        ngx.req.clear_header(GATEWAY_HEADER)
    end
    if _M.is_clearml_token(_M.bearer_token(ngx.var.http_authorization)) then
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

-- Identity of a gateway token (issued by this router, so for its workspace): a user token acts
-- as its user; an endpoint token as itself, limited to its endpoints.
function _M.gateway_identity(token)
    local claims, reason = gateway_tokens.verify(token, ngx.time())
    if not claims then
        return nil, reason, "invalid"
    end
    if claims.kind == "user" then
        return { user = _M.header_safe(claims.user), name = _M.header_safe(claims.name), company = settings.company }
    end
    return { user = _M.header_safe("gateway-token:" .. claims.id), name = _M.header_safe(claims.name),
        company = settings.company, endpoints = claims.endpoints }
end

-- access phase: lets the request through with identity headers set, or answers it. `route`: the
-- /service route id or static route name asked for (endpoint tokens grant chosen ones).
function _M.check(route)
    if not settings.enabled then
        _M.strip_credentials()
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
    local token = _M.credential()
    if not token or token == "" then
        return refuse(401, "unauthenticated", "Login required",
            "This endpoint belongs to a ClearML task. Log in to ClearML to open it.", true)
    end
    if _M.too_many_failures() then
        ngx.header["Retry-After"] = tostring(settings.failed_login_window or 60)
        return refuse(429, "too_many_failed_logins", "Too many failed logins",
            "Too many failed logins from your address. Wait a minute, then log in again.", false)
    end
    local identity, reason, kind
    if gateway_tokens.is_gateway_token(token) then
        identity, reason, kind = _M.gateway_identity(token)
    elseif not _M.is_clearml_token(token) then
        -- Not even shaped like a ClearML login: refused without a subrequest or a cache entry.
        reason, kind = "not a ClearML login token", "invalid"
    else
        identity, reason, kind = decide(token)
    end
    if not identity and kind ~= "unavailable" then
        _M.count_failure()
    end
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
    if identity.endpoints then
        if not route or not gateway_tokens.grants(identity, route) then
            return refuse(403, "forbidden", "Not granted", "This gateway token does not grant this endpoint.", false)
        end
        -- Holding the token is the grant: group membership rules do not apply.
        ngx.ctx.clearml_endpoint_grant = true
    end
    _M.strip_credentials()
    ngx.var.clearml_user_id = identity.user
    ngx.var.clearml_user_name = identity.name
    ngx.var.clearml_company_id = identity.company
    return true
end

return _M
