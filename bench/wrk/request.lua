-- wrk script of the benchmarks: the request to send and the figures to print.
--
-- Configured through environment variables set by bench.api_stack:
--   BENCH_METHOD   GET (default) or PATCH/POST/PUT
--   BENCH_HEADERS  header lines "Name: value", separated by "\n"
--   BENCH_PATHS    request paths separated by "\n"; requests cycle through them
--   BENCH_BODIES   bodies separated by "\n"; each full cycle through the paths moves to
--                  the next body (so PATCHing a role back and forth changes every row)
--   BENCH_BODIES_FILE  bodies one per line of this file (too big for the environment)
--   BENCH_UNIQUE   when set, "{{n}}" in a body becomes "<BENCH_UNIQUE>-<thread>-<count>",
--                  unique to the request (fresh emails for form submissions)
--   BENCH_CONTENT_TYPE  of the bodies (default application/json)
-- done() prints one line "BENCH_JSON {...}" with counts, errors and latency
-- percentiles in microseconds.

local function split(text, sep)
  local items = {}
  if text == nil or text == "" then return items end
  for item in string.gmatch(text, "([^" .. sep .. "]+)") do
    table.insert(items, item)
  end
  return items
end

local method = os.getenv("BENCH_METHOD") or "GET"
local paths = split(os.getenv("BENCH_PATHS"), "\n")
local bodies = split(os.getenv("BENCH_BODIES"), "\n")
local bodies_file = os.getenv("BENCH_BODIES_FILE")
if bodies_file and bodies_file ~= "" then
  local handle = assert(io.open(bodies_file, "r"))
  for line in handle:lines() do
    if line ~= "" then table.insert(bodies, line) end
  end
  handle:close()
end
local unique = os.getenv("BENCH_UNIQUE")
if unique == "" then unique = nil end
local headers = {}
for _, line in ipairs(split(os.getenv("BENCH_HEADERS"), "\n")) do
  local name, value = string.match(line, "^([^:]+):%s*(.*)$")
  if name then headers[name] = value end
end
if #bodies > 0 then
  headers["Content-Type"] = os.getenv("BENCH_CONTENT_TYPE") or "application/json"
end

local counter = 0

-- Every thread has its own Lua state; start threads at different offsets so two threads
-- do not PATCH the same row at the same moment.
-- (thread_offset is a global: thread:set() writes the thread's globals.)
local thread_count = 0
function setup(thread)
  thread:set("thread_offset", thread_count * 7)
  thread:set("thread_number", thread_count)
  thread_count = thread_count + 1
end

function init(args)
  counter = rawget(_G, "thread_offset") or 0
  if #paths == 0 then
    io.stderr:write("BENCH_PATHS is empty\n")
    os.exit(2)
  end
end

function request()
  local path = paths[(counter % #paths) + 1]
  local body = nil
  if #bodies > 0 then
    body = bodies[(math.floor(counter / #paths) % #bodies) + 1]
    if unique then
      local token = unique .. "-" .. (rawget(_G, "thread_number") or 0) .. "-" .. counter
      body = string.gsub(body, "{{n}}", token)
    end
  end
  counter = counter + 1
  return wrk.format(method, path, headers, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "bytes": %d, '
      .. '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, '
      .. '"latency_us": {"p50": %d, "p90": %d, "p95": %d, "p99": %d, "mean": %.1f, '
      .. '"max": %d}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(95),
    latency:percentile(99),
    latency.mean, latency.max
  ))
end
