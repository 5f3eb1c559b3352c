-- clearml_jwt: HS256 tokens of the auth module's local mode.
local t = require("helper")
require("fake_ngx")
local jwt = require("clearml_jwt")
local login = require("login")

t.test("hmac_sha256 matches RFC 4231 test case 2", function()
    local mac = jwt.hmac_sha256("Jefe", "what do ya want for nothing?")
    t.eq((mac:gsub(".", function(c) return string.format("%02x", c:byte()) end)),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
end)

t.test("base64url decodes without padding and refuses other alphabets", function()
    t.eq(jwt.b64url_decode("aGk"), "hi")
    t.eq(jwt.b64url_decode("-_8"), "\251\255")
    t.eq(jwt.b64url_decode("aGk="), nil)
    t.eq(jwt.b64url_decode("a"), nil)
end)

t.test("equal_time compares whole strings", function()
    t.yes(jwt.equal_time("abc", "abc"))
    t.no(jwt.equal_time("abc", "abd"))
    t.no(jwt.equal_time("abc", "ab"))
end)

t.test("a signed, unexpired token gives its claims", function()
    local claims = jwt.verify(login.token(login.user("u1", "alice")), login.key, ngx.time())
    t.eq(claims.identity, login.user("u1", "alice"))
end)

t.test("bad tokens are refused with the reason", function()
    local now = ngx.time()
    local cases = {
        { "not a token", "malformed token" },
        { login.token(login.user("u1", "a"), 600, "other key"), "bad token signature" },
        { login.token(login.user("u1", "a"), -1), "token expired" },
        { login.token(login.user("u1", "a"), 600, nil, "none"), "unsupported token algorithm" },
        { login.token("not a table"), "token has no identity" },
    }
    for _, case in ipairs(cases) do
        local claims, reason = jwt.verify(case[1], login.key, now)
        t.eq({ claims, reason }, { nil, case[2] }, case[2])
    end
end)

t.done()
