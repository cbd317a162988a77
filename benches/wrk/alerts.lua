-- wrk script: POSTs Alertmanager v2 alert arrays (what Prometheus sends).
-- usage: wrk ... -s alerts.lua URL -- ALERTS_PER_REQUEST [BEARER_TOKEN]
-- Each thread prebuilds 500 distinct bodies (distinct label sets, so neither Tocsin nor
-- Alertmanager can collapse repeats) and cycles through them; any answer other than 2xx is
-- counted and printed at the end, so a run that was refused is never reported as throughput.

local counter = 0
local threads = {}

function setup(thread)
  counter = counter + 1
  thread:set("tid", counter)
  table.insert(threads, thread)
end

function init(args)
  per_request = tonumber(args[1]) or 1
  token = args[2]
  bodies = {}
  for b = 1, 500 do
    local alerts = {}
    for a = 1, per_request do
      alerts[a] = string.format(
        '{"labels":{"alertname":"BenchAlert","instance":"host-%d-%d-%d","job":"bench","severity":"warning"},'
          .. '"annotations":{"summary":"benchmark alert %d"},"startsAt":"2026-11-27T00:00:00Z",'
          .. '"generatorURL":"http://prometheus.local/graph?g0.expr=up"}',
        tid, b, a, a)
    end
    bodies[b] = "[" .. table.concat(alerts, ",") .. "]"
  end
  headers = { ["Content-Type"] = "application/json" }
  if token and token ~= "" then
    headers["Authorization"] = "Bearer " .. token
  end
  idx = 0
  refused = 0
end

function request()
  idx = idx % #bodies + 1
  return wrk.format("POST", nil, headers, bodies[idx])
end

function response(status, hdrs, body)
  if status < 200 or status > 299 then
    refused = refused + 1
  end
end

function done(summary, latency, requests)
  local total_refused = 0
  for _, t in ipairs(threads) do
    total_refused = total_refused + (t:get("refused") or 0)
  end
  local per = tonumber(threads[1]:get("per_request")) or 1
  io.write(string.format("RESULT requests=%d refused=%d errors=%d duration_us=%d per_request=%d p50_us=%d p99_us=%d\n",
    summary.requests, total_refused,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.duration, per, latency:percentile(50), latency:percentile(99)))
end
