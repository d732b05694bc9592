-- wrk script: a 50-row keyset page from a random position (id=gt.N is the same
-- predicate the cursor builds for the default order)
local rows = tonumber(os.getenv("ROWS") or "1000")
request = function()
  return wrk.format("GET", "/mytable/?limit=50&id=gt." .. math.random(0, rows - 50))
end
