-- clearml_websocket: the upgrade request sent to the target, and the relay loop.
local t = require("helper")
require("fake_ngx")
local websocket = require("clearml_websocket")

t.test("the upgrade request: client headers but the proxy's own, then the proxy's", function()
    local head = websocket.request_head("GET", "/ws?x=1", {
        Upgrade = "websocket",
        ["Sec-WebSocket-Protocol"] = { "a", "b" },
        ["X-Forwarded-For"] = "forged",
        ["X-Real-IP"] = "forged",
        ["x-clearml-user-id"] = "forged",
    }, {
        clearml_route_prefix = "/demo", remote_addr = "192.0.2.1", scheme = "https", http_host = "gw",
        clearml_user_id = "u1", clearml_user_name = "", clearml_company_id = "c1",
    })
    t.eq(head, table.concat({
        "GET /ws?x=1 HTTP/1.1",
        "Sec-WebSocket-Protocol: a",
        "Sec-WebSocket-Protocol: b",
        "Upgrade: websocket",
        "X-Forwarded-Prefix: /demo",
        "X-Real-IP: 192.0.2.1",
        "X-Forwarded-For: 192.0.2.1",
        "X-Forwarded-Proto: https",
        "X-Forwarded-Host: gw",
        "X-ClearML-User-Id: u1",
        "X-ClearML-Company-Id: c1",
    }, "\r\n") .. "\r\n\r\n")
end)

-- A socket that yields `chunks` (the strings "closed" and "timeout" are those errors; then
-- timeouts) and records what is sent to it.
local function socket(chunks)
    local s = { sent = {} }
    function s.settimeout() end
    function s.receiveany()
        local chunk = table.remove(chunks, 1) or "timeout"
        if chunk == "closed" or chunk == "timeout" then
            return nil, chunk
        end
        return chunk
    end
    function s.send(_, data)
        s.sent[#s.sent + 1] = data
        return #data
    end
    return s
end

t.test("data flows until the source closes, then the link is done", function()
    local src, dst, link = socket({ "a", "b", "closed", "never" }), socket({}), { done = false }
    websocket.pipe(src, dst, link, function() return true end)
    t.eq({ dst.sent, link.done }, { { "a", "b" }, true })
end)

t.test("the relay stops once the route no longer serves the target", function()
    local checks = 0
    local still_served = function()
        checks = checks + 1
        return checks < 2
    end
    local src, dst, link = socket({ "a", "timeout", "c" }), socket({}), { done = false }
    websocket.pipe(src, dst, link, still_served)
    t.eq({ dst.sent, link.done }, { { "a" }, true })
end)

t.test("the other direction stopping ends this one", function()
    local src, dst = socket({ "a" }), socket({})
    websocket.pipe(src, dst, { done = true }, function() return true end)
    t.eq(dst.sent, {})
end)

t.done()
