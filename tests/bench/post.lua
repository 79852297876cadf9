-- wrk script for tests/bench/run.sh: POSTs one workload spec to /query on
-- every request and prints one machine-readable summary line at the end.
--
--   wrk -t1 -c1 -d5s -s tests/bench/post.lua http://HOST:PORT/query -- SPEC.json
--
-- No response() callback: defining one makes wrk hand every body to Lua,
-- which costs the load generator more than prefetchd on large responses.
-- Non-2xx answers are counted by wrk itself (summary.errors.status).

function init(args)
	local f = assert(io.open(args[1], "rb"))
	local body = f:read("*a")
	f:close()
	wrk.method = "POST"
	wrk.body = body
	wrk.headers["Content-Type"] = "application/json"
end

function done(summary, latency, requests)
	local e = summary.errors
	io.write(string.format(
		"WRK requests=%d duration_us=%d p50_us=%d p99_us=%d " ..
		"mean_us=%.1f non2xx=%d errors=%d bytes=%d\n",
		summary.requests, summary.duration, latency:percentile(50),
		latency:percentile(99),
		latency.mean, e.status, e.connect + e.read + e.write + e.timeout,
		summary.bytes))
end
