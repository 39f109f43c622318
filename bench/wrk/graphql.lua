-- wrk script for bench/run: POST GraphQL bodies and check every response.
--
-- Environment:
--   BENCH_BODIES  file with one JSON request body per line; one line = a static request,
--                 several = each thread rotates through them (starting at a different one)
--   BENCH_KEY     API key sent as `Authorization: Bearer <key>` (PostGraphile ignores it)
--   BENCH_EXPECT  substring every good body must contain (default `"data":{`)
--
-- A response counts as an error unless it is a 200 whose body has no `"errors"` and holds
-- BENCH_EXPECT. `done` prints one line `BENCH_RESULT {json}` with the totals of all threads,
-- wrk's own socket errors and latency percentiles (microseconds).

local bodies = {}
for line in io.lines(os.getenv("BENCH_BODIES")) do
  if #line > 0 then
    bodies[#bodies + 1] = line
  end
end
assert(#bodies > 0, "BENCH_BODIES has no body")
local expect = os.getenv("BENCH_EXPECT") or '"data":{'

wrk.method = "POST"
wrk.path = "/graphql"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. (os.getenv("BENCH_KEY") or "none")
wrk.body = bodies[1]

-- main state: the threads, to sum their counters in done()
local threads = {}
function setup(thread)
  thread:set("tid", #threads)
  threads[#threads + 1] = thread
end

-- per-thread state (each thread runs this file in its own Lua state)
non200 = 0
gql_errors = 0
bad_body = 0
sample = ""

if #bodies > 1 then
  local requests, next_i = {}, 1
  function init(args)
    for i, body in ipairs(bodies) do
      requests[i] = wrk.format(nil, nil, nil, body)
    end
    next_i = (tid * 7) % #requests + 1
  end
  function request()
    local r = requests[next_i]
    next_i = next_i % #requests + 1
    return r
  end
end

function response(status, headers, body)
  if status ~= 200 then
    non200 = non200 + 1
  elseif body:find('"errors"', 1, true) then
    gql_errors = gql_errors + 1
  elseif not body:find(expect, 1, true) then
    bad_body = bad_body + 1
  else
    return
  end
  if sample == "" then
    sample = status .. " " .. body:sub(1, 300)
  end
end

function done(summary, latency, requests)
  local n2, ge, bb, samples = 0, 0, 0, {}
  for _, t in ipairs(threads) do
    n2 = n2 + t:get("non200")
    ge = ge + t:get("gql_errors")
    bb = bb + t:get("bad_body")
    local s = t:get("sample")
    if s ~= "" then
      samples[#samples + 1] = s
    end
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests":%d,"duration_us":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,'
      .. '"max_us":%d,"mean_us":%.1f,"non200":%d,"gql_errors":%d,"bad_body":%d,'
      .. '"socket_errors":%d,"timeouts":%d}\n',
    summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean, n2, ge, bb, e.connect + e.read + e.write, e.timeout))
  for _, s in ipairs(samples) do
    io.write("BENCH_SAMPLE " .. s:gsub("\n", " ") .. "\n")
  end
end
