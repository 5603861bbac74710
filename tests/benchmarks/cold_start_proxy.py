"""The baseline: the original oVirt proxy's execution path, rebuilt for the benchmark.

A threaded stdlib XML-RPC server that, for every unit call, starts a fresh interpreter
with `python3 -c "import module; print(module.Cls().method(<arguments inlined>))"` and
reads the printed literal back, as the original proxy did.  Only what the benchmark calls.
Run: python -m tests.benchmarks.cold_start_proxy PLUGIN_DIR  (prints the URL).
"""
import ast
import subprocess
import sys
from socketserver import ThreadingMixIn
from xmlrpc.server import SimpleXMLRPCServer

UNITS = {"sdk_balance": ("sdk_units", "do_balance"), "sdk_filter": ("sdk_units", "do_filter"),
         "sdk_score": ("sdk_units", "do_score")}


class Server(ThreadingMixIn, SimpleXMLRPCServer):
    daemon_threads = True


def run_unit(folder, name, args):
    module, method = UNITS[name]
    code = (f"import sys; sys.path.append({folder!r}); import {module}; "
            f"print({module}.{name}().{method}({', '.join(repr(a) for a in args)}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30).stdout
    return ast.literal_eval(out.strip() or "None")


def main():
    folder = sys.argv[1]
    server = Server(("127.0.0.1", 0), logRequests=False, allow_none=True)
    server.register_function(
        lambda name, hosts, props: {"result_code": 0, "result": list(run_unit(folder, name, [hosts, props]) or ["", []])},
        "runLoadBalancing")
    server.register_function(
        lambda names, hosts, vm, props: {"result_code": 0, "result": run_unit(folder, names[0], [hosts, vm, props])},
        "runFilters")
    server.register_function(
        lambda pairs, hosts, vm, props: {"result_code": 0, "result": [
            [h, pairs[0][1] * s] for h, s in run_unit(folder, pairs[0][0], [hosts, vm, props])]},
        "runCostFunctions")
    print(f"http://127.0.0.1:{server.server_address[1]}/", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
