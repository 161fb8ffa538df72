-- The e2e load (wrk -t1): absolute-form GETs through the bridge, which is
-- the URL wrk connects to, each to its own path on the origin
-- (LOAD_ORIGIN/load/N), until LOAD_TOTAL responses have arrived. Then it
-- prints "LOAD_DONE {...}" and exits: wrk itself would wait out -d.
local origin = assert(os.getenv("LOAD_ORIGIN"), "LOAD_ORIGIN is not set")
local total = assert(tonumber(os.getenv("LOAD_TOTAL")), "LOAD_TOTAL is not set")
local host = origin:match("^%a+://([^/]+)")
local sent, seen, ok = 0, 0, 0

function request()
  local path = origin .. "/load/" .. sent
  sent = sent + 1
  return wrk.format("GET", path, { Host = host })
end

function response(status, headers, body)
  seen = seen + 1
  if status == 200 then
    ok = ok + 1
  end
  if seen >= total then
    io.write(string.format('LOAD_DONE {"responses":%d,"ok":%d,"sent":%d}\n', seen, ok, sent))
    io.flush()
    os.exit(0)
  end
end
