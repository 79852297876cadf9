"""Runs the Django bridge's tests against the test cluster of tests/run.sh.

Environment (exported by tests/run.sh): PFTEST_BIN (the prefetchd binary),
PFTEST_PGHOST, PFTEST_PGPORT, PFTEST_DB (demo data loaded), PFTEST_TMPDIR
(optional). Writes the overlay of the demo models with prefetchd_overlay,
starts its own prefetchd on a free port with that overlay, runs every
tests/test_*.py with unittest, stops prefetchd. The last line is check's
summary format ("Checks: N, Failures: F, Errors: E"), which tests/run.sh
adds to its totals; skipped tests are not counted as passed.

    /usr/bin/python3 proto/django/tests/run.py [-v] [unittest names...]
"""
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.request

sys.dont_write_bytecode = True  # keep the source tree clean
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(HERE), HERE]
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings")


def start_prefetchd(workdir, overlay):
    """Starts PFTEST_BIN on 127.0.0.1:0; returns (process, base url, log)."""
    conninfo = "host='%s' port='%s' dbname='%s' user=postgres" % (
        os.environ["PFTEST_PGHOST"], os.environ["PFTEST_PGPORT"],
        os.environ["PFTEST_DB"])
    log_path = os.path.join(workdir, "prefetchd-django.log")
    log = open(log_path, "w+b")
    proc = subprocess.Popen(
        [os.environ["PFTEST_BIN"], "--listen", "127.0.0.1:0",
         "--database-url", conninfo, "--schema-overlay", overlay],
        stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    deadline = time.monotonic() + 20
    url = None
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            with open(log_path, encoding="utf-8", errors="replace") as f:
                m = re.search(r"listening on 127\.0\.0\.1:(\d+)", f.read())
            if m and url is None:
                url = "http://127.0.0.1:%s" % m.group(1)
            if url:
                try:
                    with urllib.request.urlopen(url + "/readyz",
                                                timeout=2) as r:
                        if r.status == 200:
                            return proc, url, log_path
                except OSError:
                    pass
            time.sleep(0.05)
    except BaseException:  # SIGTERM (SystemExit) or ^C while waiting
        proc.kill()
        proc.wait()
        raise
    proc.kill()
    proc.wait()
    with open(log_path, encoding="utf-8", errors="replace") as f:
        sys.stderr.write(f.read()[-3000:])
    raise SystemExit("run.py: prefetchd did not become ready")


def main():
    for var in ("PFTEST_BIN", "PFTEST_PGHOST", "PFTEST_PGPORT", "PFTEST_DB"):
        if not os.environ.get(var):
            raise SystemExit("run.py: %s is not set (run through make test "
                             "or tests/run.sh)" % var)
    # Stopped by tests/run.sh's cleanup: still stop our prefetchd.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    import django
    django.setup()
    from django.core.management import call_command

    base = os.environ.get("PFTEST_TMPDIR") or None
    workdir = tempfile.mkdtemp(prefix="django-", dir=base)
    overlay = os.path.join(workdir, "overlay.json")
    call_command("prefetchd_overlay", output=overlay)
    proc, url, log_path = start_prefetchd(workdir, overlay)
    os.environ["PREFETCHD_TEST_URL"] = url
    os.environ["PREFETCHD_TEST_OVERLAY"] = overlay
    try:
        argv = [a for a in sys.argv[1:] if a != "-v"]
        verbosity = 2 if "-v" in sys.argv[1:] else 1
        loader = unittest.TestLoader()
        suite = (loader.loadTestsFromNames(argv) if argv
                 else loader.discover(HERE, pattern="test_*.py"))
        result = unittest.TextTestRunner(verbosity=verbosity,
                                         stream=sys.stdout).run(suite)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    failures, errors = len(result.failures), len(result.errors)
    if failures or errors or proc.returncode != 0:
        with open(log_path, encoding="utf-8", errors="replace") as f:
            print("--- prefetchd log (last 30 lines)")
            print("".join(f.readlines()[-30:]), end="")
    if proc.returncode != 0:
        print("run.py: prefetchd exited with status %s" % proc.returncode)
        errors += 1
    for test, reason in result.skipped:
        print("skipped: %s: %s" % (test.id(), reason))
    if not (failures or errors):
        shutil.rmtree(workdir, ignore_errors=True)  # kept for a failure
    run = result.testsRun - len(result.skipped)
    print("django: Checks: %d, Failures: %d, Errors: %d (%d skipped)"
          % (run, failures, errors, len(result.skipped)))
    return 1 if failures or errors else 0


if __name__ == "__main__":
    sys.exit(main())
