-- wrk script for bench/run.py: SCENARIO picks the request, ROWS the id range.
--   point     GET /mytable/{random id}
--   page      GET /mytable/?limit=50&id=gt.N  (a keyset page from a random position:
--             the same predicate the cursor builds for the default order)
--   filtered  a filtered, ordered page: names from a random point, descending
--   patch     PATCH a random row with If-Match, tracking each row's version from the
--             responses (a stale version answers 412 and counts as non-2xx)
local scenario = os.getenv("SCENARIO") or "point"
local rows = tonumber(os.getenv("ROWS") or "1000")

-- wrk gives every thread the same random sequence: seed each one apart
local counter = 0
setup = function(thread)
  counter = counter + 1
  thread:set("thread_id", counter)
end
init = function()
  math.randomseed(os.time() * 100 + thread_id)
end

local versions = {}
local patch_headers = {
  ["Authorization"] = "Bearer bench-token",
  ["Content-Type"] = "application/merge-patch+json",
}

request = function()
  if scenario == "page" then
    return wrk.format("GET", "/mytable/?limit=50&id=gt." .. math.random(0, rows - 50))
  elseif scenario == "filtered" then
    return wrk.format("GET", "/mytable/?version=eq.1&name=lte.bench%20"
      .. math.random(1, rows) .. "&order=name.desc&limit=50")
  elseif scenario == "patch" then
    local id = math.random(1, rows)
    patch_headers["If-Match"] = '"' .. (versions[id] or 1) .. '"'
    return wrk.format("PATCH", "/mytable/" .. id, patch_headers, '{"data":{"patched":true}}')
  end
  return wrk.format("GET", "/mytable/" .. math.random(1, rows))
end

if scenario == "patch" then
  response = function(status, _, body)
    if status == 200 then
      local id, version = body:match('"id":(%d+).-"version":(%d+)')
      if id then versions[tonumber(id)] = tonumber(version) end
    end
  end
end
