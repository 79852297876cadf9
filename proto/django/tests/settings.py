"""Django settings for the bridge's tests: the demo models, connected to the
test cluster of tests/run.sh (PFTEST_PGHOST, PFTEST_PGPORT, PFTEST_DB)."""
import os

SECRET_KEY = "prefetchd-django-tests"
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
INSTALLED_APPS = [
    # Django's own apps, to show that prefetchd_overlay hides them.
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "prefetchd_django",
    "demo",
]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ.get("PFTEST_DB", "prefetchd_test"),
        "HOST": os.environ.get("PFTEST_PGHOST", ""),
        "PORT": os.environ.get("PFTEST_PGPORT", ""),
        "USER": os.environ.get("PFTEST_PGUSER", "pftest"),
    }
}
