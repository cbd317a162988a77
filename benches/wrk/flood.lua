-- wrk script for benches/flood.py: alerts.lua's bodies, answers counted by status.
-- usage: wrk ... -s flood.lua URL -- ALERTS_PER_REQUEST [BEARER_TOKEN]
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
  s2xx, s429, s503, other, no_retry_after = 0, 0, 0, 0, 0
end

function request()
  idx = idx % #bodies + 1
  return wrk.format("POST", nil, headers, bodies[idx])
end

function response(status, hdrs, body)
  if status >= 200 and status <= 299 then
    s2xx = s2xx + 1
  elseif status == 429 or status == 503 then
    if status == 429 then s429 = s429 + 1 else s503 = s503 + 1 end
    if not (hdrs["retry-after"] or hdrs["Retry-After"]) then
      no_retry_after = no_retry_after + 1
    end
  else
    other = other + 1
  end
end

function done(summary, latency, requests)
  local t2, t429, t503, tother, tnra = 0, 0, 0, 0, 0
  for _, t in ipairs(threads) do
    t2 = t2 + (t:get("s2xx") or 0)
    t429 = t429 + (t:get("s429") or 0)
    t503 = t503 + (t:get("s503") or 0)
    tother = tother + (t:get("other") or 0)
    tnra = tnra + (t:get("no_retry_after") or 0)
  end
  local e = summary.errors
  io.write(string.format("RESULT requests=%d s2xx=%d s429=%d s503=%d other=%d no_retry_after=%d errors=%d connect=%d read=%d write=%d timeout=%d duration_us=%d p50_us=%d p99_us=%d\n",
    summary.requests, t2, t429, t503, tother, tnra, e.connect + e.read + e.write + e.timeout,
    e.connect, e.read, e.write, e.timeout,
    summary.duration, latency:percentile(50), latency:percentile(99)))
end
