-- Makes wrk speak to an HTTP proxy. wrk connects to the URL on its command
-- line (the bridge, or Squid for "direct") and sends every request in
-- absolute-form (RFC 9112 §3.2.2) for the origin URL instead.
--
-- Environment:
--   BENCH_URL         origin URL, e.g. http://127.0.0.1:8080/1k (required)
--   BENCH_PROXY_AUTH  a Proxy-Authorization value to send (direct only)
--   BENCH_CLOSE=1     send "Connection: close": one request per connection
--
-- At the end it prints one line "BENCH_JSON {...}" with the counts and the
-- latency percentiles (microseconds) for the driver to parse.

local url = os.getenv("BENCH_URL")
assert(url, "BENCH_URL is not set")

wrk.method = "GET"
wrk.path = url
wrk.headers["Host"] = url:match("^%a+://([^/]+)")
local auth = os.getenv("BENCH_PROXY_AUTH")
if auth and auth ~= "" then
  wrk.headers["Proxy-Authorization"] = auth
end
if os.getenv("BENCH_CLOSE") == "1" then
  wrk.headers["Connection"] = "close"
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"p50_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
