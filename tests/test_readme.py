"""The README's promises: its set-up commands, and its example unit, run as written."""
import re
import time

from proxy import config, executor
from tests.support import ROOT

README = (ROOT / "README.md").read_text()


def test_the_two_setup_commands_are_the_ones_ci_and_make_use():
    assert "make run" in README and "make test" in README
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^run: ", makefile, re.M) and re.search(r"^test: ", makefile, re.M)


def test_the_example_unit_works_as_written(tmp_path, sim_engine):
    [example] = [e for e in re.findall(r"```python\n(.*?)```", README, re.S) if "class " in e]
    (tmp_path / "quiet.py").write_text(example)
    cfg = config.load(None, {"plugins.folder": str(tmp_path)}).replace(
        {"engine.url": sim_engine.url, "engine.user": sim_engine.user})
    ex = executor.Executor(cfg, password=sim_engine.password)
    catalog = ex.start()
    try:
        assert catalog.rejections == ()
        [unit] = catalog.units
        assert (unit.type, unit.name, unit.properties) == ("score", "prefer_quiet_hosts", "quiet_max_cpu=[0-9]*")
        hosts = [h["id"] for h in sim_engine.snapshot()["hosts"]]
        loads = {h["id"]: h["cpu_load"] for h in sim_engine.snapshot()["hosts"]}
        [scores], _ = ex.run([executor.Call(unit, [hosts, "", {"quiet_max_cpu": "30"}])], time.monotonic() + 10)
        assert dict(scores) == {h: 0 if loads[h] < 30 else 10 for h in hosts}
    finally:
        ex.stop()
