"""PasteDeploy server runners that serve the app over its ASGI front door.

``[app:main]`` stays the plain Pyramid app (a WSGI callable); these runners
wrap its router in ``api.bridge.ASGIApp`` and hand it to an async server.
"""

import multiprocessing

from gunicorn.app.base import BaseApplication

from api.bridge import ASGIApp


class _Gunicorn(BaseApplication):
    def __init__(self, app, options):
        self.application = app
        self.options = options
        super().__init__()

    def load_config(self):
        for key, value in self.options.items():
            self.cfg.set(key, value)
        # GUNICORN_CMD_ARGS (e.g. "--bind 127.0.0.1:9000 --workers 1") wins
        # over the ini file, as it does for the gunicorn command.
        parsed = self.cfg.parser().parse_args(self.cfg.get_cmd_args_from_env())
        for key, value in vars(parsed).items():
            if value is not None and key in self.cfg.settings:
                self.cfg.set(key, value)

    def load(self):
        return self.application


def gunicorn_runner(wsgi_app, global_conf, **settings):
    """Multi-process serving: gunicorn with uvicorn workers, one per core by default.

    Every setting is a gunicorn setting (``bind``, ``workers``, ``backlog``, ...).
    """
    app = ASGIApp(wsgi_app)
    settings.setdefault("workers", multiprocessing.cpu_count())
    settings.setdefault("worker_class", "uvicorn_worker.UvicornWorker")
    # pserve built the app before gunicorn forks, so it must not hold
    # connections: engines are made per event loop, inside each worker (api.db).
    _Gunicorn(app, settings).run()


def uvicorn_runner(wsgi_app, global_conf, host="127.0.0.1", port="6543", **settings):
    """One process, one event loop: for development."""
    import uvicorn

    app = ASGIApp(wsgi_app)
    uvicorn.run(app, host=host, port=int(port), **settings)
