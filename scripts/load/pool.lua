-- wrk script: replays a pool of pre-signed webhook deliveries in order,
-- cycling, so every request carries a valid signature and (with a pool big
-- enough for the dedupe retention) a delivery the server has not seen yet.
--
--   [PACE_MS=N] wrk -t1 -c32 -d10s --latency -s scripts/load/pool.lua URL -- POOL_FILE
--
-- PACE_MS (environment, whole milliseconds; read at the top level, where
-- wrk decides whether the script paces, since init() comes later): each
-- connection waits that long after an answer before its next request, so
-- the offered load is about connections / (PACE_MS + latency) a second
-- instead of as fast as the
-- server answers: with PACE_MS well above the latency, two servers get
-- nearly the same load and their latencies can be compared at it.
--
-- POOL_FILE is written by `webhook-guard-peers gen <n> <file>`: one delivery
-- a line, tab-separated, the headers as `Name: value` fields, then the body
-- (one line of JSON). Every request is built once, here, with wrk.format;
-- request() only hands them out. Run it with one wrk thread (-t1): each
-- thread has its own copy of the pool and its own position in it, so
-- several threads would send the same deliveries at nearly the same time.

local requests = {}
local count = 0
local position = 0
local pace = tonumber(os.getenv("PACE_MS") or "0")
if pace == nil or pace < 0 then
  error("PACE_MS must be a whole number of milliseconds")
end
if pace > 0 then
  function delay()
    return pace
  end
end

function init(args)
  local path = args[1]
  if path == nil then
    error("usage: wrk ... -s pool.lua <url> -- <pool file>")
  end
  local file = assert(io.open(path, "rb"))
  for line in file:lines() do
    local fields = {}
    for field in string.gmatch(line, "[^\t]+") do
      fields[#fields + 1] = field
    end
    if #fields < 2 then
      error(path .. ": line " .. (count + 1) .. " has no headers")
    end
    local headers = {}
    for i = 1, #fields - 1 do
      local name, value = string.match(fields[i], "^([^:]+): (.*)$")
      if name == nil then
        error(path .. ": line " .. (count + 1) .. ": not a header: " .. fields[i])
      end
      headers[name] = value
    end
    count = count + 1
    requests[count] = wrk.format("POST", nil, headers, fields[#fields])
  end
  file:close()
  if count == 0 then
    error(path .. ": no deliveries")
  end
end

function request()
  position = position % count + 1
  return requests[position]
end
