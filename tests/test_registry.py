"""Plugin registry: the engine's parameter syntax, what a module holds, duplicates."""
import types

from hypothesis import given, strategies as st

from proxy import registry

KEY = st.text(alphabet="abcXYZ019_", min_size=1, max_size=8)
VALUE = st.text(alphabet=st.characters(blacklist_characters=";"), max_size=12)


def test_contract_examples():
    valid = ["", "maximum_vm_count=[0-9]*", "minimum_host_memoryMB=[0-9]*;safe_selection=True|False",
             "threshold=^([0-9]|[1-9][0-9])$;mode=(strict|loose);", "flag=", "a=b=c"]
    invalid = ["{ cpu = [0-9] }", "max-vms=[0-9]+", "a=[0-9];;b=.*", "threshold", "a=1; b=2", ";"]
    for v in valid:
        assert registry.properties_problem(v) is None, v
    for v in invalid:
        assert registry.properties_problem(v), v
    assert "must be a string" in registry.properties_problem(["a=1"])


@given(st.lists(st.tuples(KEY, VALUE), min_size=1, max_size=5), st.booleans())
def test_any_well_formed_map_is_accepted(entries, trailing):
    text = ";".join(f"{k}={v}" for k, v in entries) + (";" if trailing else "")
    assert registry.properties_problem(text) is None


@given(st.lists(st.tuples(KEY, VALUE), min_size=1, max_size=5), st.sampled_from(["-", " ", ".", "é"]))
def test_a_bad_key_character_is_refused(entries, bad):
    entries[0] = (entries[0][0] + bad, entries[0][1])
    assert registry.properties_problem(";".join(f"{k}={v}" for k, v in entries))


def _module(source, name="proxy_units.m"):
    module = types.ModuleType(name)
    exec(source, module.__dict__)
    return module


def test_units_of_a_module():
    module = _module('''
import collections
from collections import OrderedDict  # a class imported from elsewhere is not a unit of this module
class both:
    properties_validation = "a=1"
    def do_filter(self, hosts, vm, args):
        """  Filters
        things.  """
    def do_score(self, hosts, vm, args):
        pass
class broken:
    properties_validation = "{ x }"
    def do_balance(self, hosts, args):
        pass
class plain:
    pass
''')
    units, rejections = registry.units_of(module, "m.py")
    assert [(u.type, u.name, u.description, u.properties) for u in units] == [
        ("filter", "both", "Filters things.", "a=1"), ("score", "both", "", "a=1")]
    assert [(r.module, r.unit) for r in rejections] == [("m.py", "broken")]
    assert "engine's syntax" in rejections[0].reason


def test_a_balance_unit_opts_out_of_the_balancing_limits_with_a_class_attribute():
    module = _module('''
class limited:
    def do_balance(self, hosts, args):
        pass
class free:
    balancing_limits = False
    def do_balance(self, hosts, args):
        pass
''')
    units, _ = registry.units_of(module, "m.py")
    assert {u.name: u.balancing_limits for u in units} == {"free": False, "limited": True}
    catalog = registry.merge([(tuple(units), ())])
    assert registry.Catalog.from_wire(catalog.to_wire()) == catalog  # it crosses to the server


def test_duplicates_are_reported_not_swapped():
    a = registry.Unit("filter", "dup", "a.py", "first", "")
    b = registry.Unit("filter", "dup", "b.py", "second", "")
    c = registry.Unit("score", "dup", "b.py", "other type", "")
    catalog = registry.merge([((a,), ()), ((b, c), ())])
    assert catalog.find("filter", "dup").module == "a.py"
    assert catalog.find("score", "dup").module == "b.py"
    [r] = catalog.rejections
    assert r.module == "b.py" and "a.py already defines dup" in r.reason
    assert registry.Catalog.from_wire(catalog.to_wire()) == catalog


def test_module_files_and_fingerprint(tmp_path):
    (tmp_path / "b.py").write_text("")
    (tmp_path / "a.py").write_text("")
    (tmp_path / "_helper.py").write_text("")
    (tmp_path / "notes.txt").write_text("")
    assert [p.name for p in registry.module_files(tmp_path)] == ["a.py", "b.py"]
    before = registry.fingerprint(tmp_path)
    (tmp_path / "a.py").write_text("x = 1\n")
    assert registry.fingerprint(tmp_path) != before


def test_a_plugin_named_like_a_stdlib_module_does_not_shadow_it(tmp_path):
    import json
    (tmp_path / "json.py").write_text("class j:\n    def do_filter(self, h, v, a):\n        return h\n")
    module = registry.load_module(tmp_path / "json.py")
    assert module.__name__ == "proxy_units.json"
    import sys
    assert sys.modules["json"] is json


def test_a_unit_allows_worker_reuse_only_when_its_class_says_true():
    module = _module('''
class fresh:
    def do_filter(self, hosts, vm, args):
        pass
class truthy_but_not_true:
    reuse_worker = "yes"
    def do_filter(self, hosts, vm, args):
        pass
class reused:
    reuse_worker = True
    def do_filter(self, hosts, vm, args):
        pass
''')
    units, _ = registry.units_of(module, "m.py")
    assert {u.name: u.reuse_worker for u in units} == {"fresh": False, "truthy_but_not_true": False, "reused": True}
    catalog = registry.merge([(tuple(units), ())])
    assert registry.Catalog.from_wire(catalog.to_wire()) == catalog
