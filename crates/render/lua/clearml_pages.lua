-- Pages the gateway answers itself (404, 502, 401, 403, 503): HTML for browsers, JSON for API
-- clients. Every caller passes fixed text or text it escaped; nothing from the request is echoed.

local cjson = require("cjson.safe")

local _M = {}

function _M.wants_html()
    local accept = ngx.var.http_accept or ""
    return accept:find("text/html", 1, true) ~= nil
end

function _M.html_escape(s)
    return (s:gsub("[&<>\"']", { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;", ["'"] = "&#39;" }))
end

-- Answers the request and ends it. `extra_html` (already escaped) goes under the message in
-- the HTML page; `extra_json` fields are added to the JSON answer.
function _M.send(status, code, title, message, extra_html, extra_json)
    ngx.status = status
    ngx.header["Cache-Control"] = "no-store"
    if _M.wants_html() then
        ngx.header["Content-Type"] = "text/html; charset=utf-8"
        ngx.say("<!doctype html><html><head><meta charset=\"utf-8\"><title>", title,
            "</title></head><body style=\"font-family:sans-serif;max-width:40em;margin:4em auto\"><h1>",
            title, "</h1><p>", message, "</p>", extra_html or "", "<p><small>ClearML gateway</small></p></body></html>")
    else
        ngx.header["Content-Type"] = "application/json"
        local body = { error = code, message = message }
        for k, v in pairs(extra_json or {}) do
            body[k] = v
        end
        ngx.say(cjson.encode(body))
    end
    return ngx.exit(status)
end

return _M
