"""Engine side, from Java: tests/java/EngineClient.java makes the engine's four calls with the engine's
Java argument types and applies the casts the engine's response parser applies
(docs/ENGINE_PROTOCOL.md §1.2, §2).

It needs a JDK (javac, java) and Debian's aXMLRPC (/usr/share/java/axmlrpc.jar, package libaxmlrpc-java;
AXMLRPC_JAR overrides the path).  Without them the tests skip, except in CI (environment variable CI set),
where they fail.
"""
import os
import re
import shutil
import subprocess
import threading
import xmlrpc.client
from pathlib import Path
from xmlrpc.server import SimpleXMLRPCServer

import pytest

from tests.support import PLUGINS, ROOT, self_signed_cert

pytestmark = pytest.mark.e2e

SOURCE = ROOT / "tests" / "java" / "EngineClient.java"
JAR = Path(os.environ.get("AXMLRPC_JAR", "/usr/share/java/axmlrpc.jar"))
INT32_MAX = 2**31 - 1


def _tool(name):
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / name).is_file():
        return str(Path(home) / "bin" / name)
    return shutil.which(name)


@pytest.fixture(scope="session")
def engine_client(tmp_path_factory):
    """A command prefix that runs the compiled EngineClient; compiled once per session."""
    javac, java = _tool("javac"), _tool("java")
    missing = [what for what, ok in (("javac", javac), ("java", java), (str(JAR), JAR.is_file())) if not ok]
    if missing:
        reason = (f"the Java engine-side test needs {', '.join(missing)}: install a JDK and aXMLRPC, "
                  "e.g. `apt-get install default-jdk-headless libaxmlrpc-java` "
                  "(or point AXMLRPC_JAR at aXMLRPC's jar)")
        if os.environ.get("CI"):
            pytest.fail(reason + " [CI is set, so this is a failure, not a skip]")
        pytest.skip(reason)
    out = tmp_path_factory.mktemp("engine-java")
    built = subprocess.run([javac, "-Xlint:all", "-encoding", "UTF-8", "-cp", str(JAR), "-d", str(out), str(SOURCE)],
                           capture_output=True, text=True, timeout=300)
    if built.returncode != 0:
        pytest.fail(f"javac failed ({built.returncode}):\n{built.stdout}{built.stderr}")
    return [java, "-cp", os.pathsep.join([str(out), str(JAR)]), "EngineClient"]


def run_client(engine_client, url, scenario, timeout=180, jvm_options=()):
    java, *rest = engine_client
    r = subprocess.run([java, *jvm_options, *rest, url, scenario], capture_output=True, text=True, timeout=timeout)
    return r.returncode, r.stdout + r.stderr


def values(output):
    """The VALUE key=value lines the client printed (a later line wins)."""
    return dict(re.findall(r"^VALUE (\S+?)=(.*)$", output, re.M))


def assert_passed(code, output, scenario):
    fail = re.search(r"^FAIL .*$", output, re.M)
    assert code == 0, f"EngineClient {scenario} exited {code}: " + (fail.group(0) if fail else "") + "\n" + output
    assert re.search(rf"^PASSED {scenario} checks=\d+$", output, re.M), output
    assert "FAIL" not in output


def assert_lines(output, *lines):
    got = set(output.splitlines())
    missing = [line for line in lines if line not in got]
    assert not missing, f"missing lines {missing} in:\n{output}"


def test_basic_folder(start_proxy, engine_client):
    p = start_proxy(PLUGINS / "basic")
    code, out = run_client(engine_client, p.url, "basic")
    assert_passed(code, out, "basic")
    v = values(out)
    assert v["discover.filters"] == "both_kinds,drop_marked,keep_all,legacy_filter,noisy"
    assert v["discover.scores"] == "both_kinds,by_length,by_position"
    assert v["discover.balance"] == "first_vm,legacy_balance,legacy_silent"
    # Host positions 1..4 in the order sent; host 1 contains "bad", host 3 contains "cafe".
    assert v["filters.default_marker"] == "2,3,4"
    assert v["filters.marker_cafe"] == "1,2,4"
    assert v["filters.legacy_filter"] == "1,3"
    assert v["filters.noisy"] == "1"
    assert v["filters.unknown_filter"] == "1,2,3,4"
    assert v["filters.single_host"] == "2"
    # Weights are applied by the proxy (2-element pairs carry no unit, so the engine applies none):
    # by_length = 36 for every UUID, by_position = round(0.4), round(1.4), round(2.4).
    assert v["scores.by_length*2+by_position*3"] == ",".join(str(2 * 36 + 3 * i) for i in range(3)) == "72,75,78"
    assert v["scores.both_kinds*5"] == "5,5,5"
    assert v["scores.by_length*0+by_position*1"] == "0,1,2"
    assert_lines(out,
                 "OK   first_vm with vm_to_move migrates 6f9619ff-8b86-4d01-b42d-00cf4fc964ff to hosts 2,3",
                 "OK   first_vm with nil properties answers ['', []]",
                 "OK   legacy_balance (prints its answer) migrates 3fd0bb5e-2f4b-4e5a-9b6c-0d1e2f3a4b5c to hosts 1,2,3",
                 "OK   legacy_silent (prints nothing) answers ['', []]",
                 "OK   an unknown balancer answers ['', []]",
                 "OK   plugin_errors.no_such_balancer: no balance unit named 'no_such_balancer' was discovered; "
                 "`ovirt-scheduler-proxy list` shows the unit...")
    assert "balance.first_vm.1_hosts" in v and "balance.first_vm.0_hosts" in v


def test_basic_folder_over_tls_as_the_engine_trusts_it(start_proxy, engine_client, tmp_path):
    """HTTPS the way the engine's JVM connects (docs/ENGINE_PROTOCOL.md §8): the default
    trust store (here one holding the proxy's certificate), no SNI, the host name checked."""
    cert, key = self_signed_cert(tmp_path)
    store = tmp_path / "trust.p12"
    subprocess.run([_tool("keytool"), "-importcert", "-noprompt", "-alias", "proxy", "-file", str(cert),
                    "-keystore", str(store), "-storetype", "PKCS12", "-storepass", "changeit"],
                   check=True, capture_output=True)
    config = tmp_path / "proxy.toml"
    config.write_text(f'[server]\ntls_cert = "{cert}"\ntls_key = "{key}"\n')
    p = start_proxy(PLUGINS / "basic", "--config", str(config))
    assert p.url.startswith("https://127.0.0.1:")
    url = p.url.replace("127.0.0.1", "localhost")  # the host of the engine's default URL
    jvm = [f"-Djavax.net.ssl.trustStore={store}", "-Djavax.net.ssl.trustStorePassword=changeit",
           "-Djsse.enableSNIExtension=false"]
    code, out = run_client(engine_client, url, "basic", jvm_options=jvm)
    assert_passed(code, out, "basic")
    code, out = run_client(engine_client, url, "basic")  # the JVM's own trust store lacks the certificate
    assert code != 0 and "PKIX path building failed" in out


def test_faults(start_proxy, engine_client):
    p = start_proxy(PLUGINS / "basic")
    code, out = run_client(engine_client, p.url, "faults")
    assert_passed(code, out, "faults")
    faults = re.findall(r"^OK fault for (.+) \(code (-?\d+)\)$", out, re.M)
    assert [what for what, _ in faults] == [
        "unknown method", "runLoadBalancing with a VM id (4 arguments)", "runFilters with 3 arguments",
        "runFilters with a string instead of the name array", "runCostFunctions with a string factor",
        "runCostFunctions with a bare name instead of [name, factor]", "runFilters with a non-string property value",
        "discover with an argument"]
    assert_lines(out, "OK the proxy still answers after the faults")


def test_misbehaving_folder(start_proxy, engine_client):
    p = start_proxy(PLUGINS / "misbehaving", "--timeout", "2")
    code, out = run_client(engine_client, p.url, "misbehaving")
    assert_passed(code, out, "misbehaving")
    v = values(out)
    for key in ("raises", "five_failing", "hangs_filter"):
        assert v[f"filters.{key}"] == "1,2,3,4", key  # failed filters filter nothing out
    assert v["filters.bad_vm_id"] == "1,2,3"
    assert v["scores.exits*1"] == "0,0,0"
    assert v["scores.float_scores*1"] == f"{INT32_MAX},3,3"  # 1e12 clamped, 2.6 rounded
    assert v["scores.float_scores*2147483647"] == f"{INT32_MAX},{INT32_MAX},{INT32_MAX}"
    assert v["scores.nan_score*1+float_scores*2+exits*4"] == f"{INT32_MAX},6,6"
    assert int(v["balance.hangs.ms"]) < 30_000 and int(v["filters.hangs_filter.ms"]) < 30_000
    for unit in ("raises", "garbage", "calls_sys_exit", "dict_filter", "odd_type", "hangs_filter",
                 "hangs", "not_a_uuid", "foreign_hosts", "huge_output"):
        assert re.search(rf"^OK   plugin_errors\.{unit}: \S", out, re.M), unit
    assert_lines(out, "OK   a hanging balancer answers ['', []]",
                 "OK   balancer not_a_uuid answers ['', []]",
                 "OK   a hanging balancer with nil properties answers ['', []]")


# --- the checker itself: a proxy answer the engine would reject must make EngineClient fail ------

def _spoil_scores(answer):
    answer["result"] = [[host, float(score)] for host, score in answer["result"]]


def _spoil_result_code(answer):
    answer["result_code"] = True


def _spoil_balance(answer):
    answer["result"] = []  # what the original proxy answered for an unknown balancer


def _spoil_discover(answer):
    answer["extra"] = {}


def _spoil_errors(answer):
    answer["result_code"], answer["errors"] = 1, [None]


def _spoil_host(answer):
    answer["result"] = ["vm-1"]


def _spoil_plugin_errors(answer):
    answer["result_code"], answer["plugin_errors"] = 1, {"keep_all": "not an array"}


SPOILED = {
    "float score": ("runCostFunctions", _spoil_scores, "the engine casts the score to (Integer), got Double"),
    "boolean result_code": ("runFilters", _spoil_result_code, "the engine casts result_code to (Integer), got Boolean"),
    "bare balance list": ("runLoadBalancing", _spoil_balance, "result has 2 elements"),
    "unknown discover key": ("discover", _spoil_discover, "discover key extra is filters, scores or balance"),
    "nil error": ("runFilters", _spoil_errors, "a nil/null in the answer"),
    "host id not a UUID": ("runFilters", _spoil_host, "UUID.fromString throws"),
    "plugin_errors value": ("runFilters", _spoil_plugin_errors, "the engine casts to (Object[]), got String"),
}


class _Spoiler:
    """Forwards every call to the real proxy and spoils the answers of one method."""

    def __init__(self, url, method, spoil):
        self.url, self.method, self.spoil = url, method, spoil

    def _dispatch(self, method, params):
        with xmlrpc.client.ServerProxy(self.url, allow_none=True) as proxy:
            answer = getattr(proxy, method)(*params)  # a Fault propagates and is sent back as a fault
        if method == self.method:
            self.spoil(answer)
        return answer


@pytest.mark.parametrize("case", list(SPOILED))
def test_client_rejects_what_the_engine_would(start_proxy, engine_client, case):
    method, spoil, message = SPOILED[case]
    p = start_proxy(PLUGINS / "basic")
    server = SimpleXMLRPCServer(("127.0.0.1", 0), logRequests=False, allow_none=True)
    server.register_instance(_Spoiler(p.url, method, spoil))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        code, out = run_client(engine_client, f"http://127.0.0.1:{server.server_address[1]}/", "basic")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
    fail = re.findall(r"^FAIL (.*)$", out, re.M)
    assert code == 1 and len(fail) == 1, out
    assert message in fail[0] and method in fail[0], out
