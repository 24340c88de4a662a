-- wrk script: POST batches of 100 structured CloudEvents to kdsync ingest.
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
  local evs = {}
  for i = 1, 100 do
    n = n + 1
    local user = string.format("10086%013d", (tid * 7919 + n) % 10000)
    evs[i] = string.format(
      '{"specversion":"1.0","id":"wrkb-%d-%d-%d","source":"bench/wrk","type":"employee.changed","data":{"userId":"%s","role":1}}',
      os.time(), tid, n, user)
  end
  return wrk.format("POST", "/events", {
    ["Content-Type"] = "application/cloudevents-batch+json",
    ["Authorization"] = "Bearer " .. token,
  }, "[" .. table.concat(evs, ",") .. "]")
end
function done(summary, latency, requests)
  io.write(string.format("requests %d (events %d), non-2xx %d, p50 %.2fms p99 %.2fms\n",
    summary.requests, summary.requests * 100, summary.errors.status, latency:percentile(50)/1000, latency:percentile(99)/1000))
end
