/*
 * Engine-side check of the scheduler proxy: makes the four XML-RPC calls the way the oVirt engine's
 * ExternalSchedulerBrokerImpl makes them (docs/ENGINE_PROTOCOL.md §1.2) and applies the casts its response
 * parser applies (§2), failing on the first answer the engine would reject.
 *
 *   javac -cp /usr/share/java/axmlrpc.jar -d OUT EngineClient.java
 *   java -cp OUT:/usr/share/java/axmlrpc.jar EngineClient http://127.0.0.1:18781/ basic
 *
 * Scenarios: basic and faults (plugin folder tests/plugins/basic), misbehaving (tests/plugins/misbehaving,
 * proxy started with --timeout 2).  Output: "OK <check>" per passed check, "VALUE <key>=<value>" for the
 * numbers a caller may assert on, and on the first failure "FAIL <check>: <why>" with exit status 1.
 * Exit status 2 means bad usage.
 *
 * The client is aXMLRPC (Debian libaxmlrpc-java), not the engine's Apache XML-RPC 3.x.  Its response
 * types are the same for what matters here (int/i4 -> Integer, i8 -> Long, double -> Double,
 * struct -> HashMap, array -> Object[], untyped value -> String).  Flags: FLAGS_APACHE_WS (= FLAGS_NIL,
 * FLAGS_DEFAULT_TYPE_STRING, FLAGS_IGNORE_NAMESPACES: answers may use untyped strings and ex: tags) and
 * FLAGS_8BYTE_INT, so that an i8 answer arrives as a Long that the checks below name instead of as a parse
 * error.  A nil in an answer (which Apache would refuse unless namespaced) arrives as null and is rejected
 * by the no-null check.  Differences on the request side: aXMLRPC sends strings as <string> and a Java null
 * as <nil/>, where the engine sends untyped values and <ex:nil/>; the proxy reads both alike.
 */

import de.timroes.axmlrpc.XMLRPCClient;
import de.timroes.axmlrpc.XMLRPCException;
import de.timroes.axmlrpc.XMLRPCServerException;

import java.net.URL;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.UUID;
import java.util.regex.Pattern;

public final class EngineClient {

    /** The first failed check: printed as FAIL and the program exits 1. */
    static final class CheckFailed extends RuntimeException {
        private static final long serialVersionUID = 1L;

        CheckFailed(String message) {
            super(message);
        }
    }

    static final int INT32_MAX = Integer.MAX_VALUE;
    /** docs/ENGINE_PROTOCOL.md §5: the syntax CustomPropertiesUtils accepts for a unit's parameter map. */
    static final Pattern PROPERTIES_SYNTAX =
            Pattern.compile("(([a-z_A-Z0-9]+=[^;]*)(;[a-z_A-Z0-9]+=[^;]*)*;?)?", Pattern.DOTALL);

    // Host and VM ids as the engine sends them: UUID.toString(), lowercase canonical.
    // H1 contains "bad" (the default drop_marker of drop_marked), H3 contains "cafe".
    static final String H1 = id("1BAD0000-0000-4000-8000-000000000001");
    static final String H2 = id("2c0ffee0-0000-4000-8000-000000000002");
    static final String H3 = id("3CAFE000-0000-4000-8000-000000000003");
    static final String H4 = id("4d000000-0000-4000-8000-000000000004");
    static final String[] ALL = {H1, H2, H3, H4};
    static final String VM = id("6f9619ff-8b86-4d01-b42d-00cf4fc964ff");
    static final String LEGACY_VM = "3fd0bb5e-2f4b-4e5a-9b6c-0d1e2f3a4b5c";

    static XMLRPCClient client;
    static int passed;

    static String id(String text) {
        return UUID.fromString(text).toString();
    }

    // ------------------------------------------------------------------------------------------
    public static void main(String[] args) throws Exception {
        if (args.length != 2) {
            System.err.println("usage: EngineClient PROXY_URL basic|faults|misbehaving");
            System.exit(2);
        }
        client = new XMLRPCClient(new URL(args[0]), XMLRPCClient.FLAGS_APACHE_WS | XMLRPCClient.FLAGS_8BYTE_INT);
        client.setTimeout(60);  // seconds; the engine's reply timeout is 120 s, the proxy's unit timeout is far below
        String scenario = args[1];
        try {
            switch (scenario) {
                case "basic":
                    basic();
                    break;
                case "faults":
                    faults();
                    break;
                case "misbehaving":
                    misbehaving();
                    break;
                default:
                    System.err.println("unknown scenario " + scenario + "; use basic, faults or misbehaving");
                    System.exit(2);
            }
        } catch (CheckFailed e) {
            System.out.println("FAIL " + e.getMessage());
            System.out.flush();
            System.exit(1);
        }
        System.out.println("PASSED " + scenario + " checks=" + passed);
    }

    // ------------------------------------------------------------------------------------------
    // Scenarios

    /** The well-behaved folder: every method, weights applied, nil properties, legacy units. */
    static void basic() {
        Map<String, Map<String, Object[]>> units = discover();
        expectUnits(units, "filters", "keep_all", "drop_marked", "noisy", "both_kinds", "legacy_filter");
        expectUnits(units, "scores", "by_length", "by_position", "both_kinds");
        expectUnits(units, "balance", "first_vm", "legacy_balance", "legacy_silent");
        check(!units.get("filters").containsKey("helper_unit"), "discover does not list helper_unit (module _helper.py)",
                "it is listed");
        Object[] dropMarked = units.get("filters").get("drop_marked");
        check("drop_marker=.*".equals(dropMarked[1].toString()), "discover drop_marked parameters are drop_marker=.*",
                "got " + describe(dropMarked[1]));
        check("Lets every host pass.".equals(units.get("filters").get("keep_all")[0].toString()),
                "discover keep_all description is its do_filter docstring",
                "got " + describe(units.get("filters").get("keep_all")[0]));
        for (String kind : new String[]{"filters", "scores", "balance"}) {
            value("discover." + kind, sortedNames(units.get(kind)));
        }

        HashMap<String, String> props = policyProperties();
        Envelope e;

        e = runFilters(List.of("keep_all", "drop_marked"), ALL, VM, props);
        expectClean(e);
        expectHosts(e, "default_marker", "keep_all+drop_marked with default marker 'bad'", H2, H3, H4);

        props.put("drop_marker", "cafe");
        e = runFilters(List.of("drop_marked"), ALL, VM, props);
        expectClean(e);
        expectHosts(e, "marker_cafe", "drop_marked with drop_marker=cafe", H1, H2, H4);
        props.remove("drop_marker");

        e = runFilters(List.of("legacy_filter"), ALL, VM, props);
        expectClean(e);
        expectHosts(e, "legacy_filter", "legacy_filter (prints every second host)", H1, H3);

        e = runFilters(List.of("noisy", "keep_all", "both_kinds"), ALL, VM, props);
        expectClean(e);
        expectHosts(e, "noisy", "noisy+keep_all+both_kinds (noisy keeps the first host)", H1);

        e = runFilters(List.of("keep_all", "no_such_filter"), ALL, VM, props);
        expectFailed(e, "no_such_filter");
        expectHosts(e, "unknown_filter", "keep_all + an unknown filter", H1, H2, H3, H4);

        e = runFilters(List.of("keep_all"), new String[]{H2}, VM, props);
        expectClean(e);
        expectHosts(e, "single_host", "keep_all on a single host", H2);

        String[] three = {H1, H2, H3};
        int[] sums = runScores(new Object[][]{{"by_length", 2}, {"by_position", 3}}, three, props, true);
        value("scores.by_length*2+by_position*3", join(sums));
        check(Arrays.equals(sums, new int[]{72, 75, 78}), "runCostFunctions sums 2*36 + 3*round(i+0.4) per host",
                "expected 72,75,78, got " + join(sums));

        sums = runScores(new Object[][]{{"both_kinds", 5}}, three, props, true);
        value("scores.both_kinds*5", join(sums));
        check(Arrays.equals(sums, new int[]{5, 5, 5}), "runCostFunctions both_kinds (dict answer) weight 5",
                "expected 5,5,5, got " + join(sums));

        sums = runScores(new Object[][]{{"by_length", 0}, {"by_position", 1}}, three, props, true);
        value("scores.by_length*0+by_position*1", join(sums));
        check(Arrays.equals(sums, new int[]{0, 1, 2}), "runCostFunctions factor 0 cancels a unit",
                "expected 0,1,2, got " + join(sums));

        props.put("vm_to_move", VM);
        e = runBalance("first_vm", three, props);
        expectClean(e);
        expectMigration(e, "first_vm with vm_to_move", VM, H2, H3);
        props.remove("vm_to_move");

        e = runBalance("first_vm", three, props);
        expectClean(e);
        expectNothingToDo(e, "first_vm without vm_to_move");

        e = runBalance("first_vm", three, null);
        expectClean(e);
        expectNothingToDo(e, "first_vm with nil properties");

        e = runBalance("legacy_balance", three, props);
        expectClean(e);
        expectMigration(e, "legacy_balance (prints its answer)", LEGACY_VM, H1, H2, H3);

        e = runBalance("legacy_silent", three, props);
        expectClean(e);
        expectNothingToDo(e, "legacy_silent (prints nothing)");

        e = runBalance("no_such_balancer", three, props);
        expectFailed(e, "no_such_balancer");
        expectNothingToDo(e, "an unknown balancer");

        // The engine may send one host or none (docs/ENGINE_PROTOCOL.md §1.3); first_vm then asks for
        // "every host but the first", i.e. none.  Only the casts are checked: an empty candidate list means "any host" to the
        // engine (§2.5, §4), so what the proxy should answer here is a policy question, printed for the caller.
        props.put("vm_to_move", VM);
        for (String[] hosts : new String[][]{{H1}, {}}) {
            e = runBalance("first_vm", hosts, props);
            Object[] pair = (Object[]) e.result;
            value("balance.first_vm." + hosts.length + "_hosts", "vm='" + pair[0] + "' candidates="
                    + ((Object[]) pair[1]).length + " result_code=" + e.code);
        }
    }

    /** Calls the engine never makes, or makes wrongly: each must come back as an XML-RPC fault. */
    static void faults() {
        HashMap<String, String> props = policyProperties();
        expectFault("unknown method", "noSuchMethod", (Object) ALL);
        expectFault("runLoadBalancing with a VM id (4 arguments)", "runLoadBalancing", "first_vm", ALL, VM, props);
        expectFault("runFilters with 3 arguments", "runFilters", List.of("keep_all"), ALL, VM);
        expectFault("runFilters with a string instead of the name array", "runFilters", "keep_all", ALL, VM, props);
        expectFault("runCostFunctions with a string factor", "runCostFunctions",
                new Object[]{new Object[]{"by_length", "2"}}, ALL, VM, props);
        expectFault("runCostFunctions with a bare name instead of [name, factor]", "runCostFunctions",
                new Object[]{"by_length"}, ALL, VM, props);
        HashMap<String, Object> intProps = new HashMap<>();
        intProps.put("HighUtilization", 80);
        expectFault("runFilters with a non-string property value", "runFilters", List.of("keep_all"), ALL, VM, intProps);
        expectFault("discover with an argument", "discover", "x");
        Map<String, Map<String, Object[]>> units = discover();
        check(units.get("filters").containsKey("keep_all"), "the proxy still answers after the faults", "keep_all missing");
    }

    /** The misbehaving folder (proxy --timeout 2): every answer must still pass the engine's casts. */
    static void misbehaving() {
        Map<String, Map<String, Object[]>> units = discover();
        expectUnits(units, "filters", "raises", "garbage", "calls_sys_exit", "dict_filter", "odd_type",
                "hangs_filter", "good_neighbour");
        expectUnits(units, "scores", "exits", "float_scores", "nan_score");
        expectUnits(units, "balance", "hangs", "not_a_uuid", "foreign_hosts", "huge_output");
        value("discover.filters", sortedNames(units.get("filters")));

        HashMap<String, String> props = policyProperties();
        String[] three = {H1, H2, H3};
        Envelope e;

        e = runFilters(List.of("raises"), ALL, VM, props);
        expectFailed(e, "raises");
        check(e.errors.size() > 0, "runFilters with only a raising filter reports an error", "errors is empty");
        expectHosts(e, "raises", "a raising filter (fails open)", H1, H2, H3, H4);

        e = runFilters(List.of("good_neighbour", "raises", "garbage", "calls_sys_exit", "dict_filter", "odd_type"),
                ALL, VM, props);
        expectFailed(e, "raises", "garbage", "calls_sys_exit", "dict_filter", "odd_type");
        expectHosts(e, "five_failing", "good_neighbour with five failing filters", H1, H2, H3, H4);

        long start = System.nanoTime();
        e = runFilters(List.of("good_neighbour", "hangs_filter"), ALL, VM, props);
        long ms = (System.nanoTime() - start) / 1_000_000;
        expectFailed(e, "hangs_filter");
        expectHosts(e, "hangs_filter", "good_neighbour + a hanging filter", H1, H2, H3, H4);
        value("filters.hangs_filter.ms", ms);
        check(ms < 30_000, "a hanging filter is answered in " + ms + " ms", "took " + ms + " ms");

        e = runFilters(List.of("good_neighbour"), three, "not-a-vm-id", props);
        expectClean(e);
        expectHosts(e, "bad_vm_id", "a VM id that is not a UUID in the request", H1, H2, H3);

        int[] sums = runScores(new Object[][]{{"exits", 1}}, three, props, false);
        value("scores.exits*1", join(sums));
        check(Arrays.equals(sums, new int[]{0, 0, 0}), "a score unit that exits contributes nothing",
                "expected 0,0,0, got " + join(sums));

        sums = runScores(new Object[][]{{"float_scores", 1}}, three, props, true);
        value("scores.float_scores*1", join(sums));
        check(Arrays.equals(sums, new int[]{INT32_MAX, 3, 3}), "float scores rounded, 1e12 clamped to int32",
                "expected " + INT32_MAX + ",3,3, got " + join(sums));

        sums = runScores(new Object[][]{{"float_scores", INT32_MAX}}, three, props, true);
        value("scores.float_scores*2147483647", join(sums));
        check(Arrays.equals(sums, new int[]{INT32_MAX, INT32_MAX, INT32_MAX}),
                "huge factor x score clamped to int32", "got " + join(sums));

        sums = runScores(new Object[][]{{"nan_score", 1}, {"float_scores", 2}, {"exits", 4}}, three, props, false);
        value("scores.nan_score*1+float_scores*2+exits*4", join(sums));
        check(Arrays.equals(sums, new int[]{INT32_MAX, 6, 6}), "a NaN unit and an exiting unit are left out of the sum",
                "expected " + INT32_MAX + ",6,6, got " + join(sums));

        start = System.nanoTime();
        e = runBalance("hangs", three, props);
        ms = (System.nanoTime() - start) / 1_000_000;
        expectFailed(e, "hangs");
        expectNothingToDo(e, "a hanging balancer");
        value("balance.hangs.ms", ms);
        check(ms < 30_000, "a hanging balancer is answered in " + ms + " ms", "took " + ms + " ms");

        for (String name : new String[]{"not_a_uuid", "foreign_hosts", "huge_output"}) {
            e = runBalance(name, three, props);
            expectFailed(e, name);
            expectNothingToDo(e, "balancer " + name);
        }

        e = runBalance("hangs", three, null);
        expectFailed(e, "hangs");
        expectNothingToDo(e, "a hanging balancer with nil properties");
    }

    // ------------------------------------------------------------------------------------------
    // The calls, with the engine's argument order and Java types (docs/ENGINE_PROTOCOL.md §1.2)

    /** A copy of a cluster's policy map: it holds internal units' keys too. */
    static HashMap<String, String> policyProperties() {
        HashMap<String, String> props = new HashMap<>();
        props.put("HighUtilization", "80");
        props.put("CpuOverCommitDurationMinutes", "2");
        return props;
    }

    static Map<String, Map<String, Object[]>> discover() {
        Object answer = call("discover");
        noNulls(answer, "discover");
        HashMap<?, ?> top = asHashMap(answer, "discover answer");
        Map<String, Map<String, Object[]>> units = new HashMap<>();
        for (String kind : new String[]{"filters", "scores", "balance"}) {
            units.put(kind, new HashMap<>());
        }
        for (Map.Entry<?, ?> kind : top.entrySet()) {
            String key = String.valueOf(kind.getKey());
            require(units.containsKey(key), "discover key " + key + " is filters, scores or balance",
                    "the engine fails all of discovery on an unknown key");
            HashMap<?, ?> byName = asHashMap(kind.getValue(), "discover " + key);
            for (Map.Entry<?, ?> unit : byName.entrySet()) {
                String where = "discover " + key + "." + unit.getKey();
                Object[] desc = asArray(unit.getValue(), where);
                require(desc.length >= 2, where + " has [description, parameters]",
                        "has " + desc.length + " element(s): " + describe(desc));
                String regex = desc[1].toString();
                require(PROPERTIES_SYNTAX.matcher(regex).matches(), where + " parameters in the engine's syntax",
                        "the engine would skip this unit: " + describe(regex));
                units.get(key).put(String.valueOf(unit.getKey()), desc);
            }
        }
        ok("discover casts: HashMap of HashMap of Object[] (" + units.get("filters").size() + " filters, "
                + units.get("scores").size() + " scores, " + units.get("balance").size() + " balancers)");
        return units;
    }

    static Envelope runFilters(List<String> names, String[] hosts, String vm, HashMap<String, String> props) {
        String what = "runFilters " + names;
        Envelope e = envelope(call("runFilters", new ArrayList<>(names), hosts, vm, props), what);
        Object[] result = asArray(e.result, what + " result");
        Set<String> sent = Set.of(hosts);
        for (Object h : result) {
            String host = hostId(h, what + " result host");
            require(sent.contains(host), what + " returns only hosts it was sent", "returned " + host);
        }
        ok(what + " casts: result Object[] of " + result.length + " UUID string(s)");
        return e;
    }

    /** The summed scores, one per host in the order sent. */
    static int[] runScores(Object[][] unitsAndFactors, String[] hosts, HashMap<String, String> props, boolean clean) {
        StringBuilder sb = new StringBuilder();
        Object[] arg = new Object[unitsAndFactors.length];
        for (int i = 0; i < arg.length; i++) {
            arg[i] = new Object[]{(String) unitsAndFactors[i][0], (Integer) unitsAndFactors[i][1]};
            sb.append(i == 0 ? "" : ",").append(unitsAndFactors[i][0]).append('*').append(unitsAndFactors[i][1]);
        }
        String what = "runCostFunctions [" + sb + "]";
        Envelope e = envelope(call("runCostFunctions", arg, hosts, VM, props), what);
        if (clean) {
            expectClean(e);
        } else {
            check(e.code != 0, what + " reports the failed unit(s) with result_code != 0", "result_code is 0");
        }
        Object[] result = asArray(e.result, what + " result");
        Map<String, Integer> scores = new HashMap<>();
        for (Object entry : result) {
            Object[] pair = asArray(entry, what + " score entry");
            require(pair.length == 2, what + " score entry is [host, score]",
                    "length " + pair.length + ": " + describe(pair) + " (3 elements would make the engine apply"
                            + " the factor a second time)");
            String host = hostId(pair[0], what + " score host");
            if (!(pair[1] instanceof Integer)) {
                throw new CheckFailed(what + ": the engine casts the score to (Integer), got " + describe(pair[1])
                        + (pair[1] instanceof Long ? " (i8)" : pair[1] instanceof Double ? " (double)" : ""));
            }
            require(scores.put(host, (Integer) pair[1]) == null, what + " scores each host once", "twice: " + host);
        }
        require(scores.keySet().equals(Set.of(hosts)), what + " scores exactly the hosts sent",
                "scored " + scores.keySet() + " for " + Arrays.toString(hosts));
        ok(what + " casts: result Object[] of " + result.length + " [String, (Integer)] pairs, one per host sent");
        int[] sums = new int[hosts.length];
        for (int i = 0; i < hosts.length; i++) {
            sums[i] = scores.get(hosts[i]);
        }
        return sums;
    }

    static Envelope runBalance(String name, String[] hosts, HashMap<String, String> props) {
        String what = "runLoadBalancing " + name + (props == null ? " (nil properties)" : "");
        Envelope e = envelope(call("runLoadBalancing", name, hosts, props), what);
        Object[] pair = asArray(e.result, what + " result");
        require(pair.length >= 2, what + " result has 2 elements",
                "the engine indexes element 1: " + describe(pair));
        require(pair.length == 2, what + " result has exactly 2 elements", describe(pair));
        Object[] candidates = asArray(pair[1], what + " candidate hosts");
        Set<String> sent = Set.of(hosts);
        for (Object h : candidates) {
            String host = hostId(h, what + " candidate host");
            require(sent.contains(host), what + " candidates are hosts it was sent", "returned " + host);
        }
        String vm = pair[0].toString();  // the engine reads element 0 through toString()
        if (!vm.isEmpty()) {
            try {
                UUID.fromString(vm);
            } catch (IllegalArgumentException ex) {
                throw new CheckFailed(what + ": UUID.fromString of the VM id throws for " + describe(pair[0]));
            }
        }
        ok(what + " casts: result [" + (vm.isEmpty() ? "''" : "VM UUID") + ", Object[" + candidates.length + "]]");
        return e;
    }

    static Object call(String method, Object... params) {
        try {
            return client.call(method, params);
        } catch (XMLRPCServerException e) {
            throw new CheckFailed(method + ": the proxy answered a fault (" + e.getErrorNr() + ": " + e.getMessage()
                    + ") where the engine expects an answer");
        } catch (XMLRPCException e) {
            throw new CheckFailed(method + ": no usable answer (the engine would fail open): " + e);
        }
    }

    static void expectFault(String what, String method, Object... params) {
        Object answer;
        try {
            answer = client.call(method, params);
        } catch (XMLRPCServerException e) {
            check(!String.valueOf(e.getMessage()).isEmpty(), "fault for " + what + " (code " + e.getErrorNr() + ")",
                    "the fault has no message");
            value("fault." + method, e.getErrorNr());
            return;
        } catch (XMLRPCException e) {
            throw new CheckFailed(what + ": expected an XML-RPC fault, the client failed instead: " + e);
        }
        throw new CheckFailed(what + ": expected an XML-RPC fault, got an answer " + describe(answer));
    }

    // ------------------------------------------------------------------------------------------
    // The engine's envelope parsing (ExternalSchedulerBrokerObjectBuilder.populateCommonFields)

    static final class Envelope {
        int code;
        Object result;
        Map<String, List<String>> pluginErrors = new HashMap<>();
        List<String> errors = new ArrayList<>();
    }

    static Envelope envelope(Object answer, String what) {
        noNulls(answer, what);
        HashMap<?, ?> map = asHashMap(answer, what + " answer");
        Envelope e = new Envelope();
        for (String key : new String[]{"result_code", "result", "plugin_errors", "errors"}) {
            require(map.containsKey(key), what + " has " + key, "keys are " + map.keySet());
        }
        Object code = map.get("result_code");
        if (!(code instanceof Integer)) {
            throw new CheckFailed(what + ": the engine casts result_code to (Integer), got " + describe(code));
        }
        e.code = (Integer) code;
        e.result = map.get("result");
        asArray(e.result, what + " result");
        HashMap<?, ?> pe = asHashMap(map.get("plugin_errors"), what + " plugin_errors");
        for (Map.Entry<?, ?> entry : pe.entrySet()) {
            require(entry.getKey() instanceof String, what + " plugin_errors key is a string", describe(entry.getKey()));
            List<String> messages = new ArrayList<>();
            for (Object m : asArray(entry.getValue(), what + " plugin_errors." + entry.getKey())) {
                messages.add(asString(m, what + " plugin_errors." + entry.getKey() + " message"));
            }
            e.pluginErrors.put((String) entry.getKey(), messages);
        }
        for (Object m : asArray(map.get("errors"), what + " errors")) {
            e.errors.add(asString(m, what + " errors item"));
        }
        if (!e.pluginErrors.isEmpty() || !e.errors.isEmpty()) {
            require(e.code != 0, what + " has result_code != 0 with errors",
                    "the engine reads the error fields only when result_code != 0, so these would be lost: "
                            + e.pluginErrors + " " + e.errors);
        }
        ok(what + " envelope casts: (HashMap), (Integer) result_code=" + e.code + ", (Object[]) result, "
                + e.pluginErrors.size() + " plugin_errors, " + e.errors.size() + " errors");
        return e;
    }

    // ------------------------------------------------------------------------------------------
    // Expectations on what the proxy decided

    static void expectClean(Envelope e) {
        check(e.code == 0 && e.pluginErrors.isEmpty() && e.errors.isEmpty(), "  no errors reported",
                "result_code=" + e.code + " plugin_errors=" + e.pluginErrors + " errors=" + e.errors);
    }

    static void expectFailed(Envelope e, String... units) {
        for (String unit : units) {
            List<String> messages = e.pluginErrors.get(unit);
            check(messages != null && !messages.isEmpty() && !messages.get(0).isEmpty(),
                    "  plugin_errors." + unit + ": " + (messages == null ? "" : shorten(messages.get(0), 100)),
                    "no message for " + unit + " in " + e.pluginErrors);
        }
        check(e.code != 0, "  result_code != 0", "result_code is 0");
    }

    static void expectHosts(Envelope e, String key, String what, String... expected) {
        List<String> got = new ArrayList<>();
        for (Object h : (Object[]) e.result) {
            got.add((String) h);
        }
        value("filters." + key, positions(got));
        check(got.equals(List.of(expected)), "  " + what + " passes hosts " + positions(List.of(expected)),
                "got hosts " + positions(got));
    }

    static void expectMigration(Envelope e, String what, String vm, String... candidates) {
        Object[] pair = (Object[]) e.result;
        List<String> got = new ArrayList<>();
        for (Object h : (Object[]) pair[1]) {
            got.add((String) h);
        }
        check(vm.equals(pair[0]) && got.equals(List.of(candidates)),
                "  " + what + " migrates " + vm + " to hosts " + positions(List.of(candidates)),
                "got " + describe(pair[0]) + " to hosts " + positions(got));
    }

    static void expectNothingToDo(Envelope e, String what) {
        Object[] pair = (Object[]) e.result;
        check("".equals(pair[0].toString()) && ((Object[]) pair[1]).length == 0, "  " + what + " answers ['', []]",
                "got " + describe(pair));
    }

    static void expectUnits(Map<String, Map<String, Object[]>> units, String kind, String... names) {
        for (String name : names) {
            check(units.get(kind).containsKey(name), "  discover lists " + kind + "." + name,
                    "listed: " + units.get(kind).keySet());
        }
    }

    // ------------------------------------------------------------------------------------------
    // The casts themselves

    static HashMap<?, ?> asHashMap(Object o, String where) {
        if (!(o instanceof HashMap)) {
            throw new CheckFailed(where + ": the engine casts to (HashMap), got " + describe(o));
        }
        return (HashMap<?, ?>) o;
    }

    static Object[] asArray(Object o, String where) {
        if (!(o instanceof Object[])) {
            throw new CheckFailed(where + ": the engine casts to (Object[]), got " + describe(o));
        }
        return (Object[]) o;
    }

    static String asString(Object o, String where) {
        if (!(o instanceof String)) {
            throw new CheckFailed(where + ": the engine casts to (String), got " + describe(o));
        }
        return (String) o;
    }

    static String hostId(Object o, String where) {
        String s = asString(o, where);
        try {
            UUID.fromString(s);
        } catch (IllegalArgumentException e) {
            throw new CheckFailed(where + ": UUID.fromString throws for " + describe(s));
        }
        return s;
    }

    /** A null would be an NPE in the engine, and an un-namespaced nil a parse error in Apache XML-RPC. */
    static void noNulls(Object o, String where) {
        if (o == null) {
            throw new CheckFailed(where + ": a nil/null in the answer");
        }
        if (o instanceof Object[]) {
            Object[] a = (Object[]) o;
            for (int i = 0; i < a.length; i++) {
                noNulls(a[i], where + "[" + i + "]");
            }
        } else if (o instanceof Map) {
            for (Map.Entry<?, ?> entry : ((Map<?, ?>) o).entrySet()) {
                noNulls(entry.getKey(), where + " key");
                noNulls(entry.getValue(), where + "." + entry.getKey());
            }
        }
    }

    // ------------------------------------------------------------------------------------------
    // Output

    static void check(boolean condition, String what, String whyNot) {
        if (!condition) {
            throw new CheckFailed(what.strip() + ": " + whyNot);
        }
        ok(what);
    }

    /** A check that prints nothing when it holds: a summary OK line follows. */
    static void require(boolean condition, String what, String whyNot) {
        if (!condition) {
            throw new CheckFailed(what.strip() + ": " + whyNot);
        }
    }

    static void ok(String what) {
        passed++;
        System.out.println("OK " + what);
    }

    static void value(String key, Object v) {
        System.out.println("VALUE " + key + "=" + v);
    }

    /** Host ids as their 1-based positions in ALL, e.g. "2,3,4" ("-" for none). */
    static String positions(List<String> hosts) {
        List<String> out = new ArrayList<>();
        List<String> all = List.of(ALL);
        for (String h : hosts) {
            int i = all.indexOf(h);
            out.add(i < 0 ? h : String.valueOf(i + 1));
        }
        return out.isEmpty() ? "-" : String.join(",", out);
    }

    static String sortedNames(Map<String, ?> byName) {
        List<String> names = new ArrayList<>(byName.keySet());
        names.sort(null);
        return String.join(",", names);
    }

    static String join(int[] values) {
        StringBuilder sb = new StringBuilder();
        for (int v : values) {
            sb.append(sb.length() == 0 ? "" : ",").append(v);
        }
        return sb.toString();
    }

    static String describe(Object o) {
        if (o == null) {
            return "null";
        }
        String text = o instanceof Object[] ? Arrays.deepToString((Object[]) o) : String.valueOf(o);
        return o.getClass().getSimpleName() + " " + shorten(text, 160);
    }

    static String shorten(String s, int max) {
        return s.length() <= max ? s : s.substring(0, max) + "...";
    }
}
