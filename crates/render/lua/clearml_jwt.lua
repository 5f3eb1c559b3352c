-- HS256 login tokens (the auth module's local mode): signature and expiry checked here, with
-- HMAC from the OpenSSL the nginx binary already links. Only HS256 is accepted: `alg: none` and
-- algorithm confusion are refused.

local cjson = require("cjson.safe")
local ffi = require("ffi")

local _M = {}

ffi.cdef([[
typedef struct evp_md_st EVP_MD;
const EVP_MD *EVP_sha256(void);
unsigned char *HMAC(const EVP_MD *evp_md, const void *key, int key_len,
                    const unsigned char *d, size_t n, unsigned char *md, unsigned int *md_len);
]])

local crypto = nil
-- nginx links libcrypto, so its symbols are usually global already; else the library by name
-- (unversioned only with the -dev package, versioned as OpenSSL 3 installs it).
local function libcrypto()
    if crypto == nil then
        local linked = pcall(function() return ffi.C.HMAC end)
        local found, lib = pcall(ffi.load, "crypto")
        crypto = linked and ffi.C or found and lib or ffi.load("libcrypto.so.3")
    end
    return crypto
end

function _M.hmac_sha256(key, data)
    local lib = libcrypto()
    local out = ffi.new("unsigned char[32]")
    local len = ffi.new("unsigned int[1]")
    if lib.HMAC(lib.EVP_sha256(), key, #key, data, #data, out, len) == nil then
        return nil
    end
    return ffi.string(out, len[0])
end

-- base64url without padding (RFC 7515); nil if it is not.
function _M.b64url_decode(s)
    if type(s) ~= "string" or not s:match("^[%w%-_]*$") then
        return nil
    end
    s = s:gsub("-", "+"):gsub("_", "/")
    local pad = #s % 4
    if pad == 1 then
        return nil
    elseif pad > 0 then
        s = s .. string.rep("=", 4 - pad)
    end
    return ngx.decode_base64(s)
end

-- Compares in a time that does not depend on where the strings differ.
function _M.equal_time(a, b)
    if #a ~= #b then
        return false
    end
    local diff = 0
    for i = 1, #a do
        diff = bit.bor(diff, bit.bxor(a:byte(i), b:byte(i)))
    end
    return diff == 0
end

-- The claims of `token` signed with `secret` and not expired at `now` (they hold an
-- `identity` table and a numeric `exp`), or nil and the reason.
function _M.verify(token, secret, now)
    local h64, p64, s64 = token:match("^([%w%-_]+)%.([%w%-_]+)%.([%w%-_]*)$")
    if not h64 then
        return nil, "malformed token"
    end
    local header = cjson.decode(_M.b64url_decode(h64) or "")
    if type(header) ~= "table" or header.alg ~= "HS256" then
        return nil, "unsupported token algorithm"
    end
    local signature = _M.b64url_decode(s64)
    local expected = _M.hmac_sha256(secret, h64 .. "." .. p64)
    if not signature or not expected or not _M.equal_time(signature, expected) then
        return nil, "bad token signature"
    end
    local claims = cjson.decode(_M.b64url_decode(p64) or "")
    if type(claims) ~= "table" or type(claims.identity) ~= "table" then
        return nil, "token has no identity"
    end
    if type(claims.exp) ~= "number" or claims.exp <= now then
        return nil, "token expired"
    end
    return claims
end

return _M
