-- Error pages the gateway answers itself (404, 502, 401, 403, 503): HTML for browsers, JSON
-- for API clients. Every caller passes fixed text or text it escaped; nothing from the request
-- is echoed.

local cjson = require("cjson.safe")

local _M = {}

function _M.wants_html()
    local accept = ngx.var.http_accept or ""
    return accept:find("text/html", 1, true) ~= nil
end

function _M.html_escape(s)
    return (s:gsub("[&<>\"']", { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;", ["'"] = "&#39;" }))
end

-- The page for one answer: content type and body. `extra_html` (already escaped) goes under
-- the message in the HTML page; `extra_json` fields are added to the JSON answer.
function _M.body(html, code, title, message, extra_html, extra_json)
    if html then
        return "text/html; charset=utf-8", table.concat({ "<!doctype html><html><head><meta charset=\"utf-8\"><title>",
            title, "</title></head><body style=\"font-family:sans-serif;max-width:40em;margin:4em auto\"><h1>",
            title, "</h1><p>", message, "</p>", extra_html or "", "<p><small>ClearML gateway</small></p></body></html>\n" })
    end
    local body = { error = code, message = message }
    for k, v in pairs(extra_json or {}) do
        body[k] = v
    end
    return "application/json", cjson.encode(body) .. "\n"
end

-- Answers the request and ends it.
function _M.send(status, code, title, message, extra_html, extra_json)
    ngx.status = status
    ngx.header["Cache-Control"] = "no-store"
    local content_type, body = _M.body(_M.wants_html(), code, title, message, extra_html, extra_json)
    ngx.header["Content-Type"] = content_type
    ngx.print(body)
    return ngx.exit(status)
end

---------------------------------------------------------------------------------------------
-- The gateway's own answers about routes: status, code, title, message. `unavailable` is also
-- the error_page of the proxied locations (nginx 502/504).

local ROUTE_PAGES = {
    not_found = { 404, "no_route", "No such endpoint",
        "No ClearML task serves this address. The task may have stopped, or its endpoint was never requested." },
    unavailable = { 502, "task_unreachable", "Task not answering",
        "The task's endpoint is registered, but the task does not answer on its port yet. Retry in a moment." },
    forbidden = { 403, "forbidden", "Not allowed",
        "Your ClearML user is not in a group allowed to use this endpoint." },
    bad_path = { 400, "bad_path", "Bad path",
        "Paths with `.` or `..` segments (also percent-encoded) are refused." },
    no_target = { 503, "no_target", "Endpoint not in use",
        "This route is defined, but no task or target serves it right now. Retry in a moment." },
}

for name, page in pairs(ROUTE_PAGES) do
    _M[name] = function()
        return _M.send(unpack(page))
    end
end

return _M
