-- wrk script: a filtered, ordered page: names from a random point, descending
local rows = tonumber(os.getenv("ROWS") or "1000")
request = function()
  local n = math.random(1, rows)
  return wrk.format("GET", "/mytable/?version=eq.1&name=lte.bench%20" .. n .. "&order=name.desc&limit=50")
end
