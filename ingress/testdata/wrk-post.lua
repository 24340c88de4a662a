-- wrk script: POST one structured CloudEvent per request to kdsync ingest,
-- each with a new event id (so none is dropped as a duplicate) and a user
-- out of 10,000.
local threads = {}
function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end
function init(args)
  n = 0
  token = os.getenv("TOKEN")
end
function request()
  n = n + 1
  local user = string.format("10086%013d", (tid * 7919 + n) % 10000)
  local body = string.format(
    '{"specversion":"1.0","id":"wrk-%d-%d-%d","source":"bench/wrk","type":"employee.changed","time":"2026-11-23T10:00:00Z","data":{"userId":"%s","role":1}}',
    os.time(), tid, n, user)
  return wrk.format("POST", "/events", {
    ["Content-Type"] = "application/cloudevents+json",
    ["Authorization"] = "Bearer " .. token,
  }, body)
end
function done(summary, latency, requests)
  local codes = ""
  io.write(string.format("requests %d, errors: connect %d read %d write %d status %d timeout %d\n",
    summary.requests, summary.errors.connect, summary.errors.read, summary.errors.write,
    summary.errors.status, summary.errors.timeout))
  io.write(string.format("latency p50 %.2fms p90 %.2fms p99 %.2fms max %.2fms\n",
    latency:percentile(50)/1000, latency:percentile(90)/1000, latency:percentile(99)/1000, latency.max/1000))
end
