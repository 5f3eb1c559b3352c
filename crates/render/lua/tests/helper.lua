-- A tiny test helper: `test(name, fn)` runs one case, the asserts raise on a mismatch, `done()`
-- prints "<file>: N passed, M failed" (scripts/lua-tests.sh sums these) and exits non-zero on
-- any failure.

local _M = { passed = 0, failed = 0 }

local function show(value)
    if type(value) == "string" then
        return string.format("%q", value)
    elseif type(value) ~= "table" then
        return tostring(value)
    end
    local keys = {}
    for k in pairs(value) do
        keys[#keys + 1] = k
    end
    table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
    local parts = {}
    for _, k in ipairs(keys) do
        parts[#parts + 1] = "[" .. show(k) .. "]=" .. show(value[k])
    end
    return "{" .. table.concat(parts, ", ") .. "}"
end

local function same(a, b)
    if type(a) ~= "table" or type(b) ~= "table" then
        return a == b
    end
    for k, v in pairs(a) do
        if not same(v, b[k]) then
            return false
        end
    end
    for k in pairs(b) do
        if a[k] == nil then
            return false
        end
    end
    return true
end

-- Deep equality.
function _M.eq(actual, expected, what)
    if not same(actual, expected) then
        error((what and what .. ": " or "") .. "expected " .. show(expected) .. ", got " .. show(actual), 2)
    end
end

function _M.yes(value, what)
    _M.eq(not not value, true, what)
end

function _M.no(value, what)
    _M.eq(not not value, false, what)
end

-- The keys of a table, sorted (sets as lists, to compare).
function _M.keys(t)
    local out = {}
    for k in pairs(t) do
        out[#out + 1] = k
    end
    table.sort(out)
    return out
end

function _M.test(name, fn)
    local ok, err = xpcall(fn, debug.traceback)
    if ok then
        _M.passed = _M.passed + 1
    else
        _M.failed = _M.failed + 1
        print("FAIL " .. name .. "\n" .. tostring(err))
    end
end

function _M.done()
    print(string.format("%s: %d passed, %d failed", arg and arg[0] or "?", _M.passed, _M.failed))
    os.exit(_M.failed == 0 and 0 or 1)
end

return _M
