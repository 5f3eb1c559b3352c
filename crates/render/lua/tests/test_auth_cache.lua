-- clearml_auth in remote mode: how long a decision is cached, what a stale one does, and which
-- ClearML answers turn a confirmed login into a refusal. Time, the subrequest, the timer and the
-- background call are stand-ins driven by each test.
local t = require("helper")
local fake = require("fake_ngx")
local cjson = require("cjson.safe")
local auth = require("clearml_auth")
local login = require("login")

local now = 1000000
ngx.now = function() return now end
ngx.time = function() return now end

local settings = os.tmpname()
fake.write_file(settings, cjson.encode({
    enabled = true, mode = "remote", cookie_name = "clearml_token", company = "c1",
    login_url = "https://app.example/login", cache_ttl = 60, negative_ttl = 5, stale_ttl = 600,
    api_url = "http://clearml:8008",
}))
auth.init(settings, "/nonexistent")
os.remove(settings)

local USER = { data = { user = { id = "u1", name = "alice", company = { id = "c1" } } } }
local function answer(status, subcode)
    if status == 200 then
        return status, cjson.encode(USER)
    end
    return status, cjson.encode({ meta = { result_code = status, result_subcode = subcode or 0 } })
end

-- ClearML as the subrequest sees it; `subrequests` counts calls.
local clearml = { status = 200 }
local subrequests = 0
ngx.location = {
    capture = function()
        subrequests = subrequests + 1
        if clearml.hang then
            error("the subrequest was made while ClearML hangs")
        end
        local status, body = answer(clearml.status, clearml.subcode)
        return { status = status, body = body }
    end,
}
-- Timers are queued and run by the test; the background call answers like `clearml`.
local timers = {}
ngx.timer.at = function(_, fn, ...)
    timers[#timers + 1] = { fn = fn, args = { ... } }
    return true
end
local function run_timers()
    local queued = timers
    timers = {}
    for _, timer in ipairs(queued) do
        timer.fn(false, unpack(timer.args))
    end
end
auth.call_by_socket = function()
    if clearml.hang then
        return nil, "timeout"
    end
    return answer(clearml.status, clearml.subcode)
end

local function request(token)
    fake.new_request({ http_authorization = "Bearer " .. token })
    local ended = fake.run(auth.check)
    return ended and ended.status or 200
end

local function reset()
    fake.flush()
    clearml.status, clearml.subcode, clearml.hang = 200, nil, nil
    subrequests, timers = 0, {}
end

-- A fresh login for a token valid `ttl` seconds, confirmed by ClearML, then `later` seconds pass.
local function confirmed(ttl, later)
    reset()
    local token = login.token(login.user("u1", "a"), ttl)
    t.eq(request(token), 200)
    now = now + later
    return token
end

t.test("classify: only 401 with an invalid-token subcode is a refusal", function()
    for _, subcode in ipairs({ 20, 22, 30, 31 }) do
        t.eq(select(3, auth.classify(answer(401, subcode))), "invalid", "subcode " .. subcode)
    end
    t.eq(select(3, auth.classify(answer(401, 0))), "unavailable")
    t.eq(select(3, auth.classify(answer(403, 0))), "unavailable")
    t.eq(select(3, auth.classify(answer(503))), "unavailable")
    t.eq(auth.classify(answer(200)).user, "u1")
end)

t.test("token_exp reads the claim without verifying it", function()
    t.eq(auth.token_exp(login.token(login.user("u1", "a"), 42, "any key")), now + 42)
    t.eq(auth.token_exp("not-a-jwt"), nil)
end)

t.test("a cached decision never outlives the token's exp", function()
    local token = confirmed(10, 9)
    t.eq(request(token), 200)
    t.eq(subrequests, 1, "served from the cache before exp")
    now = now + 2
    clearml.status, clearml.subcode = 401, 30
    t.eq(request(token), 401, "past exp the cache is not used")
    t.eq(subrequests, 2)
    t.eq(#timers, 0, "no stale serving past exp")
end)

t.test("stale: served at once, one background re-check per token, a hang slows nobody", function()
    local token = confirmed(3600, 61)
    clearml.hang = true
    for _ = 1, 5 do
        t.eq(request(token), 200)
    end
    t.eq(subrequests, 1, "no request waited on ClearML")
    t.eq(#timers, 1, "one re-check at a time")
    run_timers()
    t.eq(request(token), 200, "a failed re-check keeps the confirmed login")
    t.eq(#timers, 0, "the next re-check waits for the lock to expire")
    -- The lock expires (the fake dict ignores TTLs).
    ngx.shared.clearml_auth:delete("lock:t:" .. ngx.encode_base64(ngx.sha1_bin(token)))
    clearml.hang, clearml.status = nil, 200
    t.eq(request(token), 200)
    run_timers()
    t.eq(request(token), 200)
    t.eq(#timers, 0, "fresh again after a good re-check")
end)

t.test("stale serving is bounded by stale_ttl", function()
    local token = confirmed(36000, 601)
    clearml.status = 503
    t.eq(request(token), 503, "past stale_ttl the login is checked again (and ClearML is down)")
end)

t.test("only an invalid-token answer ends a confirmed login", function()
    for _, case in ipairs({ { 500, 0, 200 }, { 401, 0, 200 }, { 401, 30, 401 }, { 401, 22, 401 } }) do
        local token = confirmed(3600, 61)
        clearml.status, clearml.subcode = case[1], case[2]
        t.eq(request(token), 200, "stale is served while the re-check runs")
        run_timers()
        t.eq(request(token), case[3], case[1] .. "/" .. case[2])
    end
end)

t.test("a new token while ClearML fails: 503, never a cached refusal", function()
    reset()
    clearml.status = 502
    local token = login.token(login.user("u1", "a"), 3600)
    t.eq(request(token), 503)
    clearml.status = 200
    t.eq(request(token), 200)
end)

t.test("the worker memo answers a fresh login without the shared cache, never past fresh", function()
    local token = confirmed(3600, 0)
    t.eq(request(token), 200, "read from the shared cache, remembered by the worker")
    ngx.shared.clearml_auth:delete("t:" .. ngx.encode_base64(ngx.sha1_bin(token)))
    t.eq(request(token), 200)
    t.eq(subrequests, 1, "the memo answered while the decision is fresh")
    now = now + 61
    clearml.status, clearml.subcode = 401, 30
    t.eq(request(token), 401, "past cache_ttl the memo is not used: ClearML is asked again")
    t.eq(subrequests, 2)
end)

t.done()
