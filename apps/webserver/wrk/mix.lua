-- wrk script: a mix of small files over keep-alive connections.
--   wrk -t2 -c64 -d10s -s apps/webserver/wrk/mix.lua http://127.0.0.1:8080 -- DIR/paths.txt
-- Each wrk thread reads the URL list (written by `python -m apps.webserver.make_files DIR`),
-- builds every request once, then sends them in a random order (seeded per thread).
-- done() prints one line "WRK_JSON {...}" that apps/webserver/loadgen.py parses; wrk counts
-- replies with status >= 400 as errors.status, socket errors separately.

local requests = {}
local count = 0
local thread_counter = 0

function setup(thread)
   thread_counter = thread_counter + 1
   thread:set("id", thread_counter)
end

function init(args)
   local list = args[1] or "paths.txt"
   local f = assert(io.open(list, "r"), "cannot open URL list " .. list)
   for line in f:lines() do
      if #line > 0 then
         count = count + 1
         requests[count] = wrk.format("GET", line)
      end
   end
   f:close()
   assert(count > 0, "URL list " .. list .. " is empty")
   math.randomseed(1000 + (id or 0))
end

function request()
   return requests[math.random(count)]
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      'WRK_JSON {"requests": %d, "duration_us": %d, "bytes": %d, "connect": %d, "read": %d, ' ..
      '"write": %d, "status": %d, "timeout": %d, "latency_p50_us": %d, "latency_p99_us": %d}\n',
      summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
      e.timeout, latency:percentile(50), latency:percentile(99)))
end
