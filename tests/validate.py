#!/usr/bin/env python3
"""Checks prefetchd's protocol against its JSON Schemas (proto/*.schema.json)
and its OpenAPI document (proto/openapi.json).

    validate.py --spawn BIN --database-url CONNINFO   starts BIN itself
    validate.py --url http://HOST:PORT [--psql-url CONNINFO]
    validate.py --static                               no daemon
    validate.py --sync-openapi                         rewrites the copies of
                                                       the schemas in
                                                       proto/openapi.json

Static checks: every schema is valid draft 2020-12; proto/openapi.json is an
OpenAPI 3.1 document whose $refs all resolve, which documents exactly the
daemon's endpoints, and whose components.schemas are the proto/ files; every
request in proto/examples/*.json and tests/cases/*.json is valid against the
request schema, except the cases answered 400 (bad_spec, bad_json), which
must be invalid unless prefetchd rejects them for a limit that a schema cannot
express (nesting depth, number of lookups, 64-bit integers).

Live checks, against a daemon: every example and case is POSTed to /query,
/query?debug=1 and /plan; each answer must have the case's status and error
code and validate against the response, error or plan schema (and against
the schema that proto/openapi.json gives for that path and status); debug
statements must add up to the stats; with --psql-url (or --spawn), results
are compared with the case's expect_sql / expect. /schema, /healthz,
/readyz, /metrics and /openapi.json are checked, and error answers (404,
405, 400, 413, and 401 when a token is in use) validate against the error
schema. With --spawn the daemon runs with an auth token and a small
--max-body, and must exit 0 on SIGTERM.

The last line is check's "Checks: N, Failures: F, Errors: 0", which
tests/run.sh adds to its totals; the exit status is 1 when a check failed.
Needs only the Python standard library and python3-jsonschema (Debian 12's
4.10 knows draft 2020-12). psql (postgresql-client) compares results.
"""

import argparse
import glob
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import jsonschema

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROTO = os.path.join(ROOT, "proto")
SCHEMA_FILES = {
    "Request": "request.schema.json",
    "Response": "response.schema.json",
    "Error": "error.schema.json",
    "Plan": "plan.schema.json",
    "Schema": "schema.schema.json",
}
ENDPOINTS = {
    "/query": {"post"},
    "/plan": {"post"},
    "/schema": {"get"},
    "/healthz": {"get"},
    "/readyz": {"get"},
    "/metrics": {"get"},
    "/openapi.json": {"get"},
}
# 400 answers that no JSON Schema can predict: checked by prefetchd alone.
UNEXPRESSIBLE_400 = re.compile(
    r"nesting too deep|too many prefetch_related|64 bits|out of range|"
    r"duplicate|bytes, at most")
TOKEN = "validate-py-token"


class Checker:
    """Counts tests, not assertions: a test is one case, endpoint or
    document (test()), and fails when one of its checks (ok()) fails."""

    def __init__(self):
        self.tests = {}
        self.current = "setup"

    def test(self, name):
        self.current = name
        self.tests.setdefault(name, True)

    def ok(self, cond, what, detail=""):
        self.tests.setdefault(self.current, True)
        if not cond:
            self.tests[self.current] = False
            msg = "FAIL: " + what
            if detail:
                msg += ": " + detail
            print(msg[:2000], flush=True)
        return cond

    def summary(self):
        n = len(self.tests)
        failed = sum(1 for v in self.tests.values() if not v)
        pct = 100 if n == 0 else int(100 * (n - failed) / n)
        print("%d%%: Checks: %d, Failures: %d, Errors: 0" % (pct, n, failed),
              flush=True)
        return 0 if failed == 0 else 1


def load_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def load_schemas():
    return {k: load_json(os.path.join(PROTO, v))
            for k, v in SCHEMA_FILES.items()}


def sync_openapi():
    path = os.path.join(PROTO, "openapi.json")
    doc = load_json(path)
    schemas = doc["components"]["schemas"]
    for name, schema in load_schemas().items():
        schemas[name] = schema
    with open(path, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=2, ensure_ascii=False)
        f.write("\n")
    print("rewrote " + path)


def error_text(schema, instance):
    v = jsonschema.Draft202012Validator(schema)
    errs = sorted(v.iter_errors(instance), key=lambda e: list(e.path))
    if not errs:
        return None
    e = errs[0]
    best = jsonschema.exceptions.best_match(errs) or e
    return "at $%s: %s" % ("".join("[%r]" % p for p in best.absolute_path),
                            best.message[:300])


def refs_in(node, out):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref" and isinstance(v, str):
                out.append(v)
            else:
                refs_in(v, out)
    elif isinstance(node, list):
        for v in node:
            refs_in(v, out)


def resolve_pointer(doc, ref):
    node = doc
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def deref(doc, node):
    while isinstance(node, dict) and "$ref" in node and \
            node["$ref"].startswith("#/components/"):
        node = resolve_pointer(doc, node["$ref"])
    return node


def check_openapi(c, doc, schemas):
    c.test("proto/openapi.json")
    c.ok(str(doc.get("openapi", "")).startswith("3.1."),
         "openapi.json: openapi is 3.1.x", str(doc.get("openapi")))
    info = doc.get("info", {})
    c.ok(isinstance(info.get("title"), str) and
         isinstance(info.get("version"), str),
         "openapi.json: info has title and version")
    paths = doc.get("paths", {})
    documented = {p: {m for m in ops if m in
                      ("get", "post", "put", "delete", "patch", "head",
                       "options", "trace")}
                  for p, ops in paths.items()}
    c.ok(documented == ENDPOINTS, "openapi.json documents exactly the "
         "endpoints", "%s != %s" % (documented, ENDPOINTS))
    ids = []
    for p, ops in paths.items():
        for m, op in ops.items():
            if m not in documented.get(p, ()):
                continue
            ids.append(op.get("operationId"))
            c.ok(isinstance(op.get("responses"), dict) and
                 "200" in op["responses"],
                 "openapi.json: %s %s documents its 200" % (m, p))
    c.ok(len(ids) == len(set(ids)) and None not in ids,
         "openapi.json: operationIds are unique", str(ids))
    refs = []
    refs_in(doc, refs)
    for ref in refs:
        # Refs inside the embedded JSON Schemas resolve against their $id.
        if ref.startswith("#/components/"):
            c.ok(resolve_pointer(doc, ref) is not None,
                 "openapi.json: $ref %s resolves" % ref)
    comp = doc.get("components", {}).get("schemas", {})
    for name, schema in schemas.items():
        c.ok(comp.get(name) == schema,
             "openapi.json: components.schemas.%s is proto/%s" %
             (name, SCHEMA_FILES[name]),
             "run python3 tests/validate.py --sync-openapi")
    for name, schema in comp.items():
        try:
            jsonschema.Draft202012Validator.check_schema(schema)
            c.ok(True, "")
        except jsonschema.SchemaError as e:
            c.ok(False, "openapi.json: components.schemas.%s" % name,
                 e.message)
    body = deref(doc, paths.get("/query", {}).get("post", {})
                 .get("requestBody"))
    for name, ex in (body or {}).get("content", {}) \
            .get("application/json", {}).get("examples", {}).items():
        c.ok(error_text(schemas["Request"], ex.get("value")) is None,
             "openapi.json: example %s is a valid request" % name)


def openapi_schema(doc, path, method, status, ctype="application/json"):
    """The schema the document gives for that answer, or None."""
    op = doc["paths"].get(path, {}).get(method)
    if op is None:
        return None
    resp = deref(doc, op["responses"].get(str(status)))
    if resp is None:
        return None
    for ct, media in resp.get("content", {}).items():
        if ct.split(";")[0] == ctype:
            return deref(doc, media.get("schema"))
    return None


def load_cases():
    cases = []
    for pattern in ("proto/examples/*.json", "tests/cases/*.json"):
        for path in sorted(glob.glob(os.path.join(ROOT, pattern))):
            rel = os.path.relpath(path, ROOT)
            try:
                data = load_json(path)
            except ValueError as e:
                cases.append((rel, {"name": "(unreadable)", "broken": str(e)}))
                continue
            if not isinstance(data, list):
                cases.append((rel, {"name": "(not an array)", "broken": 1}))
                continue
            for case in data:
                cases.append((rel, case))
    return cases


def expects_invalid(case):
    status = case.get("status", 200)
    code = (case.get("error") or {}).get("code")
    return status == 400 and code in ("bad_spec", "bad_json")


def check_case_requests(c, cases, schemas):
    for rel, case in cases:
        name = "%s: %s" % (rel, case.get("name"))
        c.test("request schema: " + name)
        if not c.ok(isinstance(case, dict) and "broken" not in case and
                    "request" in case, name + ": a case with a request",
                    str(case.get("broken", ""))):
            continue
        err = error_text(schemas["Request"], case["request"])
        if expects_invalid(case):
            msg = (case.get("error") or {}).get("message", "")
            c.ok(err is not None or UNEXPRESSIBLE_400.search(msg or ""),
                 name + ": answered 400 %s but valid against "
                 "request.schema.json" % case["error"]["code"])
        else:
            c.ok(err is None, name + ": request valid against "
                 "request.schema.json", err or "")


class Daemon:
    def __init__(self, base, token=None):
        self.base = base.rstrip("/")
        self.token = token

    def do(self, method, path, body=None, headers=None, auth=True):
        """(status, headers dict with lower-case names, body bytes)."""
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else \
                json.dumps(body, ensure_ascii=False).encode("utf-8")
        req = urllib.request.Request(self.base + path, data=data,
                                     method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if auth and self.token:
            req.add_header("Authorization", "Bearer " + self.token)
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with urllib.request.urlopen(req, timeout=60) as res:
                return (res.status,
                        {k.lower(): v for k, v in res.headers.items()},
                        res.read())
        except urllib.error.HTTPError as e:
            return (e.code, {k.lower(): v for k, v in e.headers.items()},
                    e.read())


def parse_body(c, what, headers, body):
    c.ok("application/json" in headers.get("content-type", ""),
         what + ": Content-Type application/json",
         headers.get("content-type", "(none)"))
    c.ok(bool(headers.get("x-request-id")), what + ": X-Request-Id")
    try:
        return json.loads(body.decode("utf-8"))
    except ValueError:
        c.ok(False, what + ": body is JSON", body[:300].decode("utf-8",
                                                             "replace"))
        return None


def check_answer(c, doc, schemas, what, path, method, status, headers, body):
    """Validates one JSON answer against the proto/ schema for its kind and
    against what openapi.json documents for (path, method, status)."""
    got = parse_body(c, what, headers, body)
    if got is None:
        return None
    if status == 200:
        kind = {"/query": "Response", "/plan": "Plan",
                "/schema": "Schema"}.get(path)
    else:
        kind = "Error"
    if kind:
        err = error_text(schemas[kind], got)
        c.ok(err is None, "%s: valid against %s" %
             (what, SCHEMA_FILES[kind]), err or "")
    if path in ENDPOINTS and method in ENDPOINTS[path]:
        schema = openapi_schema(doc, path, method, status)
        if c.ok(schema is not None, "%s: status %d of %s %s is in "
                "openapi.json" % (what, status, method.upper(), path)):
            err = error_text(schema, got)
            c.ok(err is None, what + ": valid against openapi.json", err or "")
    return got


def psql_json(conninfo, sql):
    env = dict(os.environ, PGOPTIONS="-c TimeZone=UTC",
               PGCLIENTENCODING="UTF8")
    out = subprocess.run(["psql", "-X", "-q", "-A", "-t", "-v",
                          "ON_ERROR_STOP=1", "-d", conninfo, "-c", sql],
                         env=env, capture_output=True, timeout=60)
    if out.returncode != 0:
        raise RuntimeError(out.stderr.decode("utf-8", "replace")[:500])
    text = out.stdout.decode("utf-8").strip()
    return None if text == "" else json.loads(text)


def first_difference(got, want, path="$"):
    if type(got) is not type(want) and not (
            isinstance(got, (int, float)) and isinstance(want, (int, float))
            and not isinstance(got, bool) and not isinstance(want, bool)):
        return "%s: %r != %r" % (path, got, want)
    if isinstance(want, dict):
        for k in sorted(set(got) | set(want)):
            if k not in got or k not in want:
                return "%s.%s: only in %s" % (path, k,
                                              "got" if k in got else "want")
            d = first_difference(got[k], want[k], path + "." + k)
            if d:
                return d
        return None
    if isinstance(want, list):
        if len(got) != len(want):
            return "%s: %d items, want %d" % (path, len(got), len(want))
        for i, (g, w) in enumerate(zip(got, want)):
            d = first_difference(g, w, "%s[%d]" % (path, i))
            if d:
                return d
        return None
    return None if got == want else "%s: %r != %r" % (path, got, want)


def check_cases_live(c, d, doc, schemas, cases, conninfo):
    for rel, case in cases:
        if not isinstance(case, dict) or "request" not in case or \
                "broken" in case:
            continue
        name = "%s: %s" % (rel, case.get("name"))
        c.test("live: " + name)
        want_status = case.get("status", 200)
        want_code = (case.get("error") or {}).get("code")
        status, headers, body = d.do("POST", "/query", case["request"])
        c.ok(status == want_status, name + ": status %d" % want_status,
             "got %d: %s" % (status, body[:300]))
        got = check_answer(c, doc, schemas, name, "/query", "post", status,
                           headers, body)
        if got is None:
            continue
        if want_status != 200:
            if status != 200:
                c.ok(got.get("error", {}).get("code") == want_code,
                     name + ": error code %s" % want_code,
                     str(got.get("error")))
            continue
        if status != 200:
            continue
        # DESIGN.md §6.5: a request with "aggregate" is answered with
        # "aggregate" instead of "results".
        key = "aggregate" if "aggregate" in case["request"] else "results"
        if not c.ok(key in got, name + ": the answer has " + key,
                    str(sorted(got))):
            continue
        stats = got["stats"]
        if "queries" in case:
            c.ok(stats["queries"] == case["queries"],
                 name + ": stats.queries %d" % case["queries"],
                 str(stats["queries"]))
        if stats["queries"] > 0:
            c.ok(re.match(r"^db;dur=[0-9.]+, total;dur=[0-9.]+$",
                          headers.get("server-timing", "")) is not None,
                 name + ": Server-Timing", headers.get("server-timing", ""))
        want = None
        if "expect" in case:
            want = case["expect"]
        elif "expect_sql" in case and conninfo:
            try:
                want = psql_json(conninfo, case["expect_sql"])
            except (RuntimeError, ValueError) as e:
                c.ok(False, name + ": expect_sql runs", str(e))
        if want is not None:
            diff = first_difference(got[key], want)
            c.ok(diff is None, name + ": %s as expected" % key, diff or "")

        status, headers, body = d.do("POST", "/query?debug=1",
                                     case["request"])
        dbg = check_answer(c, doc, schemas, name + " (debug=1)", "/query",
                           "post", status, headers, body)
        if dbg is not None and status == 200:
            qs = dbg.get("queries")
            if c.ok(isinstance(qs, list), name + ": debug=1 lists queries"):
                c.ok(len(qs) == dbg["stats"]["queries"] and
                     sum(q["rows"] for q in qs) == dbg["stats"]["rows"],
                     name + ": debug queries add up to stats",
                     "%d queries, stats %s" % (len(qs), dbg["stats"]))
            c.ok(dbg.get(key) == got[key],
                 name + ": debug=1 gives the same " + key)

        status, headers, body = d.do("POST", "/plan", case["request"])
        plan = check_answer(c, doc, schemas, name + " (plan)", "/plan",
                            "post", status, headers, body)
        if plan is not None and status == 200:
            c.ok(len(plan["queries"]) >= stats["queries"],
                 name + ": the plan has every statement sent",
                 "%d planned, %d sent" % (len(plan["queries"]),
                                          stats["queries"]))


def check_endpoints_live(c, d, doc, schemas, max_body):
    c.test("GET /schema")
    status, headers, body = d.do("GET", "/schema")
    c.ok(status == 200, "GET /schema is 200", str(status))
    got = check_answer(c, doc, schemas, "GET /schema", "/schema", "get",
                       status, headers, body)
    if got and status == 200:
        names = [m["name"] for m in got["models"]]
        c.ok(len(names) == len(set(names)) and len(names) > 0,
             "GET /schema: model names unique")
        known = set(names)
        for m in got["models"]:
            for r in m["relations"]:
                c.ok(r["target"] in known, "GET /schema: %s.%s targets a "
                     "model" % (m["name"], r["name"]), r["target"])
    c.test("GET /healthz, /readyz, /metrics, /openapi.json")
    for path, want in (("/healthz", "ok"), ("/readyz", "ready")):
        status, headers, body = d.do("GET", path)
        c.ok(status == 200, "GET %s is 200" % path, str(status))
        got = check_answer(c, doc, schemas, "GET " + path, path, "get",
                           status, headers, body)
        c.ok(got == {"status": want}, "GET %s body" % path, str(got))
    status, headers, body = d.do("GET", "/metrics")
    c.ok(status == 200 and headers.get("content-type", "")
         .startswith("text/plain"), "GET /metrics is text/plain",
         "%d %s" % (status, headers.get("content-type")))
    c.ok(b"prefetchd_requests_total{" in body,
         "GET /metrics counts requests")
    status, headers, body = d.do("GET", "/openapi.json")
    got = check_answer(c, doc, schemas, "GET /openapi.json", "/openapi.json",
                       "get", status, headers, body)
    c.ok(got == doc, "GET /openapi.json serves proto/openapi.json",
         "rebuild prefetchd after editing proto/openapi.json")

    errors = [
        ("GET", "/nope", None, 404, "not_found", None),
        ("DELETE", "/query", None, 405, "method_not_allowed", None),
        ("GET", "/query", None, 405, "method_not_allowed", None),
        ("POST", "/query", b"{not json", 400, "bad_json", "/query"),
        ("POST", "/plan", b"[1]", 400, "bad_json", "/plan"),
        ("POST", "/query", {"model": "author", "limit": -1}, 400, "bad_spec",
         "/query"),
        ("POST", "/query", {"model": "nope"}, 422, "unknown_model",
         "/query"),
        ("POST", "/plan", {"model": "book", "prefetch_related": ["xyz"]},
         422, "unknown_relation", "/plan"),
    ]
    if max_body:
        big = {"model": "author", "filter": {"name__in": ["x" * 1000] *
                                             (max_body // 1000 + 1)}}
        errors.append(("POST", "/query", big, 413, "body_too_large",
                       "/query"))
    for method, path, body, want, code, documented in errors:
        what = "%s %s (%s)" % (method, path, code)
        c.test("error answer: " + what)
        status, headers, raw = d.do(method, path, body)
        c.ok(status == want, what + ": status %d" % want,
             "got %d: %s" % (status, raw[:200]))
        got = check_answer(c, doc, schemas, what, documented or path,
                           method.lower() if documented else "-",
                           status, headers, raw)
        if got:
            c.ok(got.get("error", {}).get("code") == code,
                 what + ": code " + code, str(got))
    if d.token:
        for path in ("/query", "/schema", "/metrics", "/openapi.json"):
            method = "POST" if path == "/query" else "GET"
            status, headers, raw = d.do(method, path, {"model": "author"}
                                        if method == "POST" else None,
                                        auth=False)
            what = "%s %s without the token" % (method, path)
            c.test("error answer: " + what)
            c.ok(status == 401, what + ": 401", str(status))
            check_answer(c, doc, schemas, what, path, method.lower(), status,
                         headers, raw)


def spawn(bin_path, conninfo, tmpdir, max_body):
    log = open(os.path.join(tmpdir, "prefetchd-validate.log"), "w+b")
    proc = subprocess.Popen(
        [bin_path, "--listen", "127.0.0.1:0", "--database-url", conninfo,
         "--auth-token", TOKEN, "--max-body", str(max_body)],
        stdout=log, stderr=subprocess.STDOUT)
    port = None
    for _ in range(200):
        log.seek(0)
        m = re.search(rb"listening on 127\.0\.0\.1:(\d+)", log.read())
        if m:
            port = int(m.group(1))
            break
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    return proc, log, port


def wait_ready(d, seconds):
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            if d.do("GET", "/readyz")[0] == 200:
                return True
        except OSError:
            pass
        time.sleep(0.1)
    return False


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--spawn", metavar="BIN")
    ap.add_argument("--database-url", metavar="CONNINFO")
    ap.add_argument("--url")
    ap.add_argument("--psql-url", metavar="CONNINFO")
    ap.add_argument("--token", default=os.environ.get("PREFETCHD_AUTH_TOKEN"))
    ap.add_argument("--static", action="store_true")
    ap.add_argument("--sync-openapi", action="store_true")
    ap.add_argument("--wait", type=float, default=30,
                    help="seconds to wait for /readyz (default 30)")
    args = ap.parse_args()

    if args.sync_openapi:
        sync_openapi()
        return 0
    if not (args.static or args.url or (args.spawn and args.database_url)):
        ap.error("give --static, --url, or --spawn with --database-url")

    c = Checker()
    c.test("proto/*.schema.json")
    schemas = {}
    for name, file in SCHEMA_FILES.items():
        try:
            schemas[name] = load_json(os.path.join(PROTO, file))
            jsonschema.Draft202012Validator.check_schema(schemas[name])
            c.ok(True, "")
        except (ValueError, jsonschema.SchemaError) as e:
            c.ok(False, "proto/%s is a valid JSON Schema" % file, str(e))
            return c.summary()
    doc = load_json(os.path.join(PROTO, "openapi.json"))
    check_openapi(c, doc, schemas)
    cases = load_cases()
    check_case_requests(c, cases, schemas)
    if args.static:
        return c.summary()

    proc = log = None
    max_body = 0
    conninfo = args.psql_url
    with tempfile.TemporaryDirectory() as tmpdir:
        c.test("prefetchd starts, serves and stops")
        if args.spawn:
            max_body = 65536
            conninfo = conninfo or args.database_url
            proc, log, port = spawn(args.spawn, args.database_url, tmpdir,
                                    max_body)
            d = Daemon("http://127.0.0.1:%d" % (port or 0), TOKEN)
            if not c.ok(port is not None, "prefetchd starts"):
                log.seek(0)
                print(log.read()[-3000:].decode("utf-8", "replace"))
                proc.kill()
                return c.summary()
        else:
            d = Daemon(args.url, args.token)
        c.test("prefetchd starts, serves and stops")
        try:
            if c.ok(wait_ready(d, args.wait), "prefetchd is ready within "
                    "%g s" % args.wait):
                check_endpoints_live(c, d, doc, schemas, max_body)
                check_cases_live(c, d, doc, schemas, cases, conninfo)
        finally:
            if proc:
                c.test("prefetchd starts, serves and stops")
                proc.send_signal(signal.SIGTERM)
                try:
                    rc = proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    rc = proc.wait()
                if not c.ok(rc == 0, "prefetchd exits 0 on SIGTERM",
                            str(rc)):
                    log.seek(0)
                    print(log.read()[-3000:].decode("utf-8", "replace"))
                log.close()
    return c.summary()


if __name__ == "__main__":
    sys.exit(main())
