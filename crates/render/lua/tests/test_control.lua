-- clearml_control: request counts and the status endpoint.
local t = require("helper")
local fake = require("fake_ngx")
local cjson = require("cjson.safe")
local control = require("clearml_control")

t.test("the report has the request totals the traffic flush counted", function()
    for _, route in ipairs({ "abc", "abc", "xyz", false }) do
        fake.new_request({})
        ngx.status = 200
        ngx.ctx.clearml_route = route or nil
        require("clearml_traffic").record()
    end
    t.eq(control.report("h").requests, {}, "nothing before the flush")
    require("clearml_traffic").flush(true)
    t.eq(control.report("h").requests, { abc = 2, xyz = 1 })
end)

t.test("a POST loads the table before answering", function()
    local path = os.tmpname()
    fake.write_file(path, cjson.encode({ version = "v1", routes = { abc = { host = "10.0.0.1", port = 80 } } }))
    require("clearml_store").init(path)
    fake.write_file(path, cjson.encode({ version = "v2", routes = {} }))
    fake.new_request({})
    control.status("hash1")
    local report = cjson.decode(fake.request.body)
    t.eq({ report.config_hash, report.routes_version, report.routes, report.auth }, { "hash1", "v1", 1, "disabled" })
    fake.new_request({ method = "POST" })
    control.status("hash1")
    report = cjson.decode(fake.request.body)
    t.eq({ report.routes_version, report.routes, report.error }, { "v2", 0, nil })
    t.eq(ngx.header["Content-Type"], "application/json")
    os.remove(path)
end)

t.done()
