-- wrk script for make soak: cycles through a fixed mix of requests and
-- counts the answers by status; done() prints "status CODE N" lines and
-- wrk's socket errors, which tests/soak/soak.sh checks.
--
-- The mix, by weight: valid querysets (the README's demos and more), 60;
-- invalid ones (bad JSON, unknown names, wrong types, wrong paths and
-- methods), 25; heavy ones, 15: a join that only statement_timeout stops
-- (504) and results past --max-rows (413); plus /readyz and /schema.

local reqs = {}
local json = { ["Content-Type"] = "application/json" }

local function add(weight, method, path, body)
	local r = wrk.format(method, path, body and json or nil, body)
	for _ = 1, weight do
		reqs[#reqs + 1] = r
	end
end

-- valid (200)
add(8, "POST", "/query", '{"model":"author","filter":{"name__endswith":"Brontë"},"only":["name"],"prefetch_related":["book_set"]}')
add(8, "POST", "/query", '{"model":"library","only":["name"],"prefetch_related":["books","books__readers"]}')
add(8, "POST", "/query", '{"model":"article","filter":{"id__lte":3},"only":["title"],"select_related":["author","category"],"prefetch_related":["tags","comment_set"]}')
add(6, "POST", "/query", '{"model":"author","filter":{"id__in":[23,24,25]},"only":["name"],"prefetch_related":[{"lookup":"article_set_by_author","queryset":{"filter":{"is_published":true},"only":["title","pub_date"]},"to_attr":"published_articles"}]}')
add(6, "POST", "/query", '{"model":"article","filter":{"id__in":[1,2,4]},"only":["title"],"prefetch_related":[{"lookup":"comment_set","queryset":{"order_by":["-created_at"],"limit":5,"only":["body","created_at"]},"to_attr":"recent_comments"}]}')
add(6, "POST", "/query", '{"model":"book","filter":{"title__icontains":"the"},"order_by":["-published"],"limit":5,"select_related":["author"]}')
add(6, "POST", "/query?debug=1", '{"model":"reader","prefetch_related":["book_set__author","review_set"]}')
add(4, "POST", "/plan", '{"model":"category","prefetch_related":["category_set__category_set"]}')
add(4, "GET", "/schema")
add(4, "GET", "/readyz")

-- invalid (400, 404, 405, 422)
add(4, "POST", "/query", '{"model":"author",')
add(4, "POST", "/query", '{"model":"nosuch"}')
add(4, "POST", "/query", '{"model":"book","filter":{"nosuch__icontains":"x"}}')
add(3, "POST", "/query", '{"model":"book","prefetch_related":["author__xyz"]}')
add(3, "POST", "/query", '{"model":"book","limit":-1}')
add(3, "POST", "/query", '{"model":"book","filter":{"id":"not a number"}}')
add(2, "GET", "/nope")
add(2, "GET", "/query")

-- heavy (504 by statement_timeout, 413 past --max-rows)
add(8, "POST", "/query", '{"model":"book","only":["title"],"filter":{"$or":[{"readers__book__readers__book__readers__book__readers__book__title__regex":"zzz"},{"title__regex":"zzz"}]}}')
add(7, "POST", "/query", '{"model":"book","filter":{"readers__book__readers__book__title__regex":"."}}')

local i = 0
counts = {} -- a global: done() reads it with thread:get
local threads = {}

function setup(thread)
	threads[#threads + 1] = thread
	-- each thread starts at another point of the cycle
	thread:set("start", #threads * 17)
end

function init(args)
	i = (start or 0) % #reqs
end

function request()
	i = i % #reqs + 1
	return reqs[i]
end

function response(status, headers, body)
	counts[status] = (counts[status] or 0) + 1
end

function done(summary, latency, requests)
	local total = {}
	for _, t in ipairs(threads) do
		for k, v in pairs(t:get("counts")) do
			total[k] = (total[k] or 0) + v
		end
	end
	for k, v in pairs(total) do
		io.write(string.format("status %d %d\n", k, v))
	end
	local e = summary.errors
	io.write(string.format("socket_errors connect %d read %d write %d timeout %d\n",
		e.connect, e.read, e.write, e.timeout))
	io.write(string.format("requests %d\n", summary.requests))
	io.write(string.format("latency_p99_ms %.1f\n", latency:percentile(99) / 1000))
end
