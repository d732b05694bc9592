-- wrk script: GET /mytable/{random id in 1..ROWS}
local rows = tonumber(os.getenv("ROWS") or "1000")
request = function()
  return wrk.format("GET", "/mytable/" .. math.random(1, rows))
end
