from django.apps import AppConfig


class PrefetchdConfig(AppConfig):
    name = "prefetchd_django"
    verbose_name = "prefetchd bridge"
