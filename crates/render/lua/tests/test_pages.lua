-- clearml_pages: the gateway's own answers, HTML for browsers and JSON for the rest.
local t = require("helper")
local fake = require("fake_ngx")
local cjson = require("cjson.safe")
local pages = require("clearml_pages")

t.test("html_escape covers the five characters", function()
    t.eq(pages.html_escape([[<a href="x">'&'</a>]]), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;")
end)

t.test("JSON answers carry the code, message and extra fields", function()
    local content_type, body = pages.body(false, "no_route", "T", "M", "<p>x</p>", { login_url = "u" })
    t.eq(content_type, "application/json")
    t.eq(cjson.decode(body), { error = "no_route", message = "M", login_url = "u" })
end)

t.test("HTML answers carry title, message and the extra HTML", function()
    local content_type, body = pages.body(true, "no_route", "Title", "Message", "<p>extra</p>")
    t.eq(content_type, "text/html; charset=utf-8")
    t.yes(body:find("<title>Title</title>", 1, true) and body:find("<p>Message</p><p>extra</p>", 1, true), body)
end)

t.test("browsers get HTML, others JSON; the request ends with the status", function()
    fake.new_request({ http_accept = "text/html,application/xhtml+xml" })
    t.eq(fake.run(pages.not_found), { ended = "exit", status = 404 })
    t.eq({ ngx.status, ngx.header["Content-Type"], ngx.header["Cache-Control"] },
        { 404, "text/html; charset=utf-8", "no-store" })
    for status, page in pairs({ [502] = pages.unavailable, [403] = pages.forbidden, [503] = pages.no_target }) do
        fake.new_request({})
        t.eq(fake.run(page).status, status)
        t.eq(ngx.header["Content-Type"], "application/json")
    end
end)

t.done()
