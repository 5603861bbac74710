"""/health (readiness) and alive() (liveness, for the watchdog), on real proxies."""
import json
import os
import re
import signal
import threading
import xmlrpc.client

from proxy import health
from tests import executor_support
from tests.support import PLUGINS, free_port, http_get, wait_until


def monitor_url(p):
    return wait_until(lambda: re.search(r"metrics on (http://\S+)/metrics", p.log()), 10, "the monitor")[1]


def get_health(url):
    status, headers, body = http_get(url + "/health")
    assert headers["Content-Type"] == "application/json"
    return status, json.loads(body)


def test_health_goes_503_when_the_fork_server_dies_and_back_after_the_next_call(start_proxy):
    p = start_proxy(PLUGINS / "basic", "--metrics-port", str(free_port()))
    url = monitor_url(p)
    status, body = get_health(url)
    assert status == 200
    assert body == {"status": "ok", "units": 11, "rejected": 0, "fork_server_pid": body["fork_server_pid"],
                    "spare_workers": body["spare_workers"], "slots": 8, "slots_in_use": 0}
    os.kill(body["fork_server_pid"], signal.SIGKILL)
    status, down = wait_until(lambda: (lambda r: r if r[0] == 503 else None)(get_health(url)), 10, "a 503")
    assert down["status"] == "unavailable"
    assert down["reason"] == (f"the fork server (pid {body['fork_server_pid']}) has exited (the log says how); "
                              "the next engine call starts a new one")
    xmlrpc.client.ServerProxy(p.url).discover()  # an engine call replaces the fork server
    status, again = get_health(url)
    assert status == 200 and again["fork_server_pid"] != body["fork_server_pid"]


def test_health_is_503_when_no_unit_is_loaded(start_proxy, tmp_path):
    (tmp_path / "units").mkdir()
    (tmp_path / "units" / "broken.py").write_text("raise ImportError('nothing here')\n")
    p = start_proxy(tmp_path / "units", "--metrics-port", str(free_port()))
    status, body = get_health(monitor_url(p))
    assert status == 503
    assert body["reason"] == "no policy unit is loaded (1 rejected): `ovirt-scheduler-proxy list` shows why"


def test_the_listener_serves_only_metrics_and_health(start_proxy):
    p = start_proxy(PLUGINS / "basic", "--metrics-port", str(free_port()))
    url = monitor_url(p)
    status, _, body = http_get(url + "/")
    assert status == 404 and b"/metrics and /health" in body
    status, _, body = http_get(url + "/metrics?name[]=x")
    assert status == 200 and b"ovirt_scheduler_proxy_slots 8.0" in body


def test_alive_replaces_a_dead_fork_server_and_needs_the_serving_thread():
    ex = executor_support.make(PLUGINS / "basic")
    serving = threading.Event()
    thread = threading.Thread(target=serving.wait)
    thread.start()
    try:
        first = ex.status()["fork_server_pid"]
        assert health.alive(ex, thread)
        os.kill(first, signal.SIGKILL)
        wait_until(lambda: not ex.status()["fork_server_alive"], 10, "the fork server's death to be seen")
        assert health.health(ex)[0] == 503
        assert health.alive(ex, thread) and ex.status()["fork_server_pid"] != first
        assert health.health(ex)[0] == 200
    finally:
        serving.set()
        thread.join()
    assert not health.alive(ex, thread)
    ex.stop()
    assert health.health(ex) == (503, {"status": "unavailable", "reason": "the proxy is stopping"})
