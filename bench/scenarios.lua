-- wrk script for bench/run.py: SCENARIO picks the request, ROWS the id range.
--   point     GET /mytable/{random id}
--   page      GET /mytable/?limit=50&id=gt.N  (a keyset page from a random position:
--             the same predicate the cursor builds for the default order)
--   filtered  a filtered, ordered page: names from a random point, descending
--   patch     PATCH a random row with If-Match, tracking each row's version from the
--             responses (a stale version answers 412 and counts as non-2xx)
--   stale     PATCH a random row with an If-Match no row has: every answer a 412
--   missing   GET /mytable/{id past the table's rows}: every answer a 404
--   nowhere   GET /{a name no table has}, as scanners send: every answer a 404
local scenario = os.getenv("SCENARIO") or "point"
local rows = tonumber(os.getenv("ROWS") or "1000")
-- ACCEPT: the Accept header of every read, as clients send one (curl and
-- httpx */*); wrk sends none.
if os.getenv("ACCEPT") then
  wrk.headers["Accept"] = os.getenv("ACCEPT")
end

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
    local id = math.random(1, math.floor(rows / 2))
    patch_headers["If-Match"] = '"' .. (versions[id] or 1) .. '"'
    return wrk.format("PATCH", "/mytable/" .. id, patch_headers, '{"data":{"patched":true}}')
  elseif scenario == "stale" then
    patch_headers["If-Match"] = '"0"'
    return wrk.format("PATCH", "/mytable/" .. math.random(1, rows), patch_headers, '{"data":{}}')
  elseif scenario == "missing" then
    return wrk.format("GET", "/mytable/" .. (rows + math.random(1, rows)))
  elseif scenario == "nowhere" then
    return wrk.format("GET", "/wp-admin" .. math.random(1, rows) .. ".php")
  end
  return wrk.format("GET", "/mytable/" .. math.random(1, rows))
end

-- Versions are learnt from the rows answered (bench/writes.py sets every
-- row's version to 1 before each run).
local function learn_versions(status, _, body)
  if status == 200 then
    local id, version = body:match('"id":(%d+).-"version":(%d+)')
    if id then versions[tonumber(id)] = tonumber(version) end
  end
end
if scenario == "patch" then
  response = learn_versions
end

-- Writes (bench/writes.py): each as a client of PostgREST's protocol would send it.
--   put         PUT a random row with If-Match, versions tracked as for patch
--   delete      DELETE rows one after another, from the middle of the table up
--   post        POST one row
--   post100, post1000   POST an array of 100 or 1000 rows
--   upsert1000  POST 1000 rows by id with Prefer: resolution=merge-duplicates
--   patch1000   PATCH the 1000 rows of a random id range (?id=gte.N&id=lt.N+1000)
--   patch_eq    PATCH one random row by filter (?id=eq.N), as supabase-js's update().eq() does
--   patch_eq_shown  the same, answered with the row (return=representation), as postgrest-py's
--   upsert_shuffled  upsert SHUFFLED_ROWS (20) distinct rows of the first HOT_ROWS (2000), in a
--               random order: sessions that lock rows in different orders, and deadlock
local writer = {["Authorization"] = "Bearer bench-token", ["Content-Type"] = "application/json"}
local arrays = {}
local function array(count, first)
  local items = {}
  for n = 1, count do
    local id = first and ('"id":' .. (first + n) .. ',') or ""
    items[n] = '{' .. id .. '"name":"written ' .. n .. '","data":{"n":' .. n .. '}}'
  end
  return "[" .. table.concat(items, ",") .. "]"
end
-- DELETE takes rows from DELETE_FROM up (bench/writes.py puts them above the
-- seeded rows); the other writes stay in the lower half of the table.
local next_delete = tonumber(os.getenv("DELETE_FROM") or "") or math.floor(rows / 2)
local kept = math.floor(rows / 2)
local upserts = {}
local hot_rows = tonumber(os.getenv("HOT_ROWS") or "2000")
local shuffled_rows = tonumber(os.getenv("SHUFFLED_ROWS") or "20")

local function write_request()
  if scenario == "put" then
    local id = math.random(1, kept)
    writer["If-Match"] = '"' .. (versions[id] or 1) .. '"'
    return wrk.format("PUT", "/mytable/" .. id, writer, '{"name":"put","data":{"put":true}}')
  elseif scenario == "delete" then
    writer["If-Match"] = nil
    next_delete = next_delete + 1
    return wrk.format("DELETE", "/mytable/" .. next_delete, writer)
  elseif scenario == "post" then
    return wrk.format("POST", "/mytable/", writer, '{"name":"posted","data":{"n":1}}')
  elseif scenario == "post100" or scenario == "post1000" then
    local count = scenario == "post100" and 100 or 1000
    arrays[count] = arrays[count] or array(count)
    return wrk.format("POST", "/mytable/", writer, arrays[count])
  elseif scenario == "upsert1000" then
    local block = math.random(0, math.floor(kept / 1000) - 1)
    upserts[block] = upserts[block] or array(1000, block * 1000)
    local headers = {
      ["Authorization"] = writer["Authorization"],
      ["Content-Type"] = "application/json",
      ["Prefer"] = "resolution=merge-duplicates",
    }
    return wrk.format("POST", "/mytable/", headers, upserts[block])
  elseif scenario == "upsert_shuffled" then
    local ids, picked = {}, {}
    while #ids < shuffled_rows do  -- distinct ids, in a random order
      local id = math.random(1, hot_rows)
      if not picked[id] then
        picked[id] = true
        ids[#ids + 1] = id
      end
    end
    local items = {}
    for n = 1, shuffled_rows do
      items[n] = '{"id":' .. ids[n] .. ',"name":"upserted","data":{"n":' .. n .. '}}'
    end
    local headers = {
      ["Authorization"] = writer["Authorization"],
      ["Content-Type"] = "application/json",
      ["Prefer"] = "resolution=merge-duplicates",
    }
    return wrk.format("POST", "/mytable/", headers, "[" .. table.concat(items, ",") .. "]")
  elseif scenario == "patch_eq" or scenario == "patch_eq_shown" then
    writer["If-Match"] = nil
    writer["Prefer"] = scenario == "patch_eq_shown" and "return=representation" or nil
    local path = "/mytable/?id=eq." .. math.random(1, kept)
    return wrk.format("PATCH", path, writer, '{"name":"patched by filter"}')
  elseif scenario == "patch1000" then
    local first = math.random(1, kept - 1000)
    local path = "/mytable/?id=gte." .. first .. "&id=lt." .. (first + 1000)
    writer["If-Match"] = nil
    return wrk.format("PATCH", path, writer, '{"name":"patched by filter"}')
  end
end

if scenario == "put" or scenario == "delete" or scenario:sub(1, 4) == "post"
    or scenario:sub(1, 6) == "upsert" or scenario == "patch1000" or scenario:sub(1, 8) == "patch_eq" then
  request = write_request
end
if scenario == "put" then
  response = learn_versions
end
