"""The connection pool fits the server: a busy moment reuses connections instead of opening new ones."""
from __future__ import annotations

import threading
import urllib.request

from sqlalchemy import event

from conftest import API_TOKEN
from geekai.db import db

THREADS = 16


def test_sixteen_busy_server_threads_open_no_more_connections_than_the_pool_keeps(app):
    from waitress.server import create_server

    with app.app_context():
        engine = db.engine
    opened = []
    event.listen(engine, "connect", lambda *_: opened.append(1))
    server = create_server(app, host="127.0.0.1", port=0, threads=THREADS)

    def run():
        try:
            server.run()
        except OSError:  # close() below pulls the socket from under waitress's select()
            pass

    serving = threading.Thread(target=run, daemon=True)
    serving.start()
    # The history reads the database on every request (GET /api/bot may answer from the state cache).
    url = f"http://127.0.0.1:{server.getsockname()[1]}/api/bot/events?limit=5"
    failures = []

    def client():
        for _ in range(12):
            request = urllib.request.Request(url, headers={"Authorization": f"Bearer {API_TOKEN}"})
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    response.read()
            except OSError as exc:
                failures.append(exc)

    try:
        clients = [threading.Thread(target=client) for _ in range(THREADS)]
        for thread in clients:
            thread.start()
        for thread in clients:
            thread.join(60)
    finally:
        from waitress import wasyncore

        server.task_dispatcher.shutdown()
        wasyncore.close_all(server._map)  # the listening socket and every kept-alive connection
        serving.join(5)
    assert failures == []
    # 192 requests on 16 threads: at most one connection per thread, opened once and kept (the
    # connection the schema check left in the pool may serve some of them).
    assert len(opened) <= THREADS, len(opened)
    assert 1 <= engine.pool.checkedin() <= THREADS
    assert engine.pool.size() == app.config["DB_POOL_SIZE"]
