-- The websocket relay of static routes: one websocket between the client and the target chosen
-- in access, closed on both sides once the route no longer serves that target (disabled,
-- deleted, or the target dropped), checked at least every second.

local pages = require("clearml_pages")
local store = require("clearml_store")

local _M = {}

-- Headers of the client request not copied to the target: the proxy sets its own.
local SKIPPED = { ["x-forwarded-prefix"] = true, ["x-forwarded-for"] = true, ["x-forwarded-proto"] = true,
    ["x-forwarded-host"] = true, ["x-real-ip"] = true, ["x-clearml-user-id"] = true,
    ["x-clearml-user-name"] = true, ["x-clearml-company-id"] = true, ["x-clearml-gateway-token"] = true }

-- Identity headers and the variables holding the checked login.
local IDENTITY = { { "X-ClearML-User-Id", "clearml_user_id" }, { "X-ClearML-User-Name", "clearml_user_name" },
    { "X-ClearML-Company-Id", "clearml_company_id" } }

-- The upgrade request for the target: request line, the client's headers (`headers` as
-- ngx.req.get_headers gives them, raw names) but the skipped ones, then the proxy's own.
-- `vars` holds the nginx variables read (a table, or ngx.var).
function _M.request_head(method, uri, headers, vars)
    local lines = { method .. " " .. uri .. " HTTP/1.1" }
    local names = {}
    for name in pairs(headers) do
        names[#names + 1] = name
    end
    -- Sorted: the same request always gives the same bytes.
    table.sort(names)
    for _, name in ipairs(names) do
        if not SKIPPED[name:lower()] then
            local values = headers[name]
            for _, v in ipairs(type(values) == "table" and values or { values }) do
                lines[#lines + 1] = name .. ": " .. v
            end
        end
    end
    lines[#lines + 1] = "X-Forwarded-Prefix: " .. vars.clearml_route_prefix
    -- The client as realip determined it, as proxy_pass sends it (router.conf).
    lines[#lines + 1] = "X-Real-IP: " .. vars.remote_addr
    lines[#lines + 1] = "X-Forwarded-For: " .. vars.remote_addr
    lines[#lines + 1] = "X-Forwarded-Proto: " .. vars.scheme
    lines[#lines + 1] = "X-Forwarded-Host: " .. (vars.http_host or "")
    for _, pair in ipairs(IDENTITY) do
        local v = vars[pair[2]]
        if v and v ~= "" then
            lines[#lines + 1] = pair[1] .. ": " .. v
        end
    end
    return table.concat(lines, "\r\n") .. "\r\n\r\n"
end

-- Copies from `src` to `dst` until either side closes, `link.done` is set or `still_served()`
-- turns false; then sets `link.done` so that the other direction stops too.
function _M.pipe(src, dst, link, still_served)
    src:settimeout(1000)
    while not link.done do
        local data, err = src:receiveany(65536)
        if data then
            if not dst:send(data) then
                break
            end
        elseif err ~= "timeout" then
            break
        end
        if not still_served() then
            break
        end
    end
    link.done = true
end

-- content_by_lua for @clearml_static_websocket.
function _M.relay()
    local name = ngx.var.clearml_static_name
    local peer = ngx.var.clearml_static_peer
    local host, port = peer:match("^(%S+) (%d+)$")
    local up = ngx.socket.tcp()
    up:settimeout(10000)
    if not up:connect(host, tonumber(port)) then
        return pages.unavailable()
    end
    local head = _M.request_head(ngx.req.get_method(), ngx.var.clearml_upstream_uri, ngx.req.get_headers(100, true),
        ngx.var)
    if not up:send(head) then
        return pages.unavailable()
    end
    local answer = up:receiveuntil("\r\n\r\n")()
    if not answer then
        return pages.unavailable()
    end
    local down = ngx.req.socket(true)
    if not down then
        up:close()
        return ngx.exit(ngx.ERROR)
    end
    down:send(answer .. "\r\n\r\n")
    local link = { done = false }
    local still_served = function()
        return store.static_serves(name, peer)
    end
    local a = ngx.thread.spawn(_M.pipe, up, down, link, still_served)
    local b = ngx.thread.spawn(_M.pipe, down, up, link, still_served)
    ngx.thread.wait(a, b)
    link.done = true
    up:close()
    ngx.thread.kill(a)
    ngx.thread.kill(b)
    return ngx.exit(ngx.OK)
end

return _M
