-- A minimal stand-in for lua-nginx-module's `ngx`, enough to load the gateway's modules and run
-- their handlers with plain luajit. Handlers that end a request (ngx.exit, ngx.redirect,
-- ngx.exec) raise an `ended` table, as nginx abandons the handler there; `run` returns it.
-- Hashes come from the system's libcrypto, as nginx's do.

local ffi = require("ffi")

local _M = {}

ffi.cdef([[
unsigned char *MD5(const unsigned char *d, size_t n, unsigned char *md);
unsigned char *SHA1(const unsigned char *d, size_t n, unsigned char *md);
]])
-- The unversioned name needs the -dev package; the versioned one is what OpenSSL 3 installs.
local found, crypto = pcall(ffi.load, "crypto")
if not found then
    crypto = ffi.load("libcrypto.so.3")
end

local function digest(fn, size, s)
    local out = ffi.new("unsigned char[?]", size)
    fn(s, #s, out)
    return ffi.string(out, size)
end

local function hex(s)
    return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

local function encode_base64(s)
    local out = {}
    for i = 1, #s, 3 do
        local a, b, c = s:byte(i, i + 2)
        local n = a * 65536 + (b or 0) * 256 + (c or 0)
        for j = 3, 0, -1 do
            local index = math.floor(n / 64 ^ j) % 64
            out[#out + 1] = B64:sub(index + 1, index + 1)
        end
        if not c then
            out[#out] = "="
        end
        if not b then
            out[#out - 1] = "="
        end
    end
    return table.concat(out)
end

-- nil for anything that is not padded base64, as ngx.decode_base64.
local function decode_base64(s)
    if #s % 4 ~= 0 or not s:match("^[%w+/]*=?=?$") then
        return nil
    end
    local out = {}
    for i = 1, #s, 4 do
        local n, pad = 0, 0
        for j = i, i + 3 do
            local c = s:sub(j, j)
            if c == "=" then
                pad = pad + 1
            end
            n = n * 64 + (c == "=" and 0 or B64:find(c, 1, true) - 1)
        end
        local bytes = string.char(math.floor(n / 65536), math.floor(n / 256) % 256, n % 256)
        out[#out + 1] = bytes:sub(1, 3 - pad)
    end
    return table.concat(out)
end

-- A lua_shared_dict in memory (expiry ignored).
function _M.shared_dict()
    local data = {}
    local dict = {}
    function dict.get(_, key)
        return data[key]
    end
    function dict.set(_, key, value)
        data[key] = value
        return true
    end
    function dict.add(_, key, value)
        if data[key] ~= nil then
            return false, "exists"
        end
        data[key] = value
        return true
    end
    function dict.delete(_, key)
        data[key] = nil
    end
    function dict.incr(_, key, by, init)
        if data[key] == nil then
            if init == nil then
                return nil, "not found"
            end
            data[key] = init
        end
        data[key] = data[key] + by
        return data[key]
    end
    -- `max` 0: all keys (sorted here, for tests that compare them).
    function dict.get_keys(_, max)
        local keys = {}
        for key in pairs(data) do
            keys[#keys + 1] = key
        end
        table.sort(keys)
        max = max or 1024
        while max > 0 and #keys > max do
            keys[#keys] = nil
        end
        return keys
    end
    function dict.flush_all()
        data = {}
    end
    return dict
end

-- What the last request did (and what the fake request is): reset by `new_request`.
_M.request = {}

local ngx = {
    OK = 0,
    ERROR = -1,
    WARN = 5,
    ERR = 4,
    HTTP_POST = 8,
    HTTP_MOVED_PERMANENTLY = 301,
    shared = {
        clearml_routes = _M.shared_dict(),
        clearml_routes_text = _M.shared_dict(),
        clearml_router_state = _M.shared_dict(),
        clearml_requests = _M.shared_dict(),
        clearml_traffic = _M.shared_dict(),
        clearml_auth = _M.shared_dict(),
        clearml_ratelimit = _M.shared_dict(),
    },
    worker = { id = function() return 0 end, pid = function() return 4242 end, exiting = function() return false end },
    timer = { every = function() return true end },
    sleep = function() end,
    now = function() return os.time() end,
    time = function() return os.time() end,
    md5 = function(s) return hex(digest(crypto.MD5, 16, s)) end,
    sha1_bin = function(s) return digest(crypto.SHA1, 20, s) end,
    encode_base64 = encode_base64,
    decode_base64 = decode_base64,
    escape_uri = function(s)
        return (s:gsub("[^%w%-_%.~]", function(c) return string.format("%%%02X", c:byte()) end))
    end,
}

function ngx.log(level, ...)
    _M.request.logs[#_M.request.logs + 1] = { level = level, message = table.concat({ ... }) }
end

function ngx.say(...)
    ngx.print(...)
    ngx.print("\n")
end

function ngx.print(...)
    _M.request.body = _M.request.body .. table.concat({ ... })
end

function ngx.exit(status)
    error({ ended = "exit", status = status }, 0)
end

function ngx.redirect(uri, status)
    error({ ended = "redirect", uri = uri, status = status }, 0)
end

function ngx.exec(location)
    error({ ended = "exec", location = location }, 0)
end

ngx.req = {
    get_method = function() return _M.request.method end,
    start_time = function() return _M.request.start_time or ngx.now() end,
    get_headers = function() return _M.request.headers end,
    set_header = function(name, value) _M.request.headers[name] = value end,
    clear_header = function(name) _M.request.headers[name] = nil end,
}

-- The ngx.balancer module: records the peer it is given.
package.preload["ngx.balancer"] = function()
    return {
        set_current_peer = function(host, port)
            _M.request.peer = { host, port }
            return true
        end,
        set_more_tries = function(n)
            _M.request.more_tries = n
            return true
        end,
    }
end

-- Variables every request has; `new_request` overrides them.
local DEFAULT_VARS = { request_uri = "/", scheme = "http", host = "gw", http_host = "gw", remote_addr = "192.0.2.1" }

-- Starts a fresh request with nginx variables `vars` (method from vars.method, default GET).
function _M.new_request(vars)
    vars = vars or {}
    for name, value in pairs(DEFAULT_VARS) do
        if vars[name] == nil then
            vars[name] = value
        end
    end
    _M.request = { method = vars.method or "GET", headers = vars.headers or {}, logs = {}, body = "" }
    ngx.var = vars
    ngx.ctx = {}
    ngx.header = {}
    ngx.status = nil
end

-- Runs a handler: what ended the request (see above), or nil if it went on to the proxy.
function _M.run(handler, ...)
    local ok, err = pcall(handler, ...)
    if ok then
        return nil
    end
    if type(err) == "table" and err.ended then
        return err
    end
    error(err, 0)
end

-- Empties every shared dict, and the auth module's per-worker memos (as a fresh worker would).
function _M.flush()
    for _, dict in pairs(ngx.shared) do
        dict.flush_all()
    end
    local auth = package.loaded["clearml_auth"]
    if auth then
        auth.reset_worker_memos()
    end
end

function _M.write_file(path, text)
    local f = assert(io.open(path, "wb"))
    f:write(text)
    f:close()
end

-- Serves routing table `doc` (a table, encoded as routes.json) through the real loader.
function _M.serve_table(doc)
    local path = os.tmpname()
    _M.write_file(path, require("cjson.safe").encode(doc))
    _M.flush()
    require("clearml_store").init(path)
    os.remove(path)
end

_G.ngx = ngx
_M.ngx = ngx
_M.new_request()
return _M
