"""gunicorn as the shop runs in production, behind nginx (deploy/nginx-cardshop.conf).

    gunicorn -c deploy/gunicorn.conf.py cardshop.wsgi:application

Environment: GUNICORN_BIND (default unix:/run/cardshop/gunicorn.sock), GUNICORN_WORKERS (default: one per
core), GUNICORN_THREADS (default 4). The figures behind these choices are in the README (bench/checkout_pay.py,
bench/burst.py).
"""

import os

bind = os.environ.get("GUNICORN_BIND", "unix:/run/cardshop/gunicorn.sock")
workers = int(os.environ.get("GUNICORN_WORKERS", os.cpu_count() or 2))
# Threads overlap one request's waits (PostgreSQL, Redis, the provider's create call) with another's CPU.
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
# nginx keeps idle connections to us for its upstream keepalive_timeout (60 s). gunicorn must hold them longer:
# its default of 2 s closed connections nginx (or a browser, without nginx) was about to send on, and a POST
# sent on a closing connection is reset, not retried.
keepalive = 75
# Connections waiting to be accepted during a burst: the kernel queue, capped by net.core.somaxconn.
backlog = 2048
timeout = 60
graceful_timeout = 30
accesslog = None  # nginx writes the access log
