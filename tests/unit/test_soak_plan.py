"""benchmarks/soak.py's pure parts: the kill plan, the operation choice, the table, the
"address held twice" computation. Importing the script needs neither root nor Docker."""

import collections
import random

import pytest

import benchscripts


@pytest.fixture(scope="module")
def soak():
    return benchscripts.load("soak")


# -- the plan --------------------------------------------------------------------------------

def kill_cycles(plan):
    return [i for i, k in enumerate(plan) if k is not None]


@pytest.mark.parametrize("cycles,kills", [(1000, 50), (120, 50), (50, 50), (7, 3), (1000, 1)])
def test_plan_has_at_least_the_kills_spread_over_the_run(soak, cycles, kills):
    plan = soak.make_plan(cycles, kills, seed=7)
    assert len(plan) == cycles
    at = kill_cycles(plan)
    assert len(at) >= kills
    # one in each of `kills` equal stretches: never a long stretch without one
    for i in range(kills):
        lo, hi = i * cycles // kills, (i + 1) * cycles // kills
        assert any(lo <= c < hi for c in at), (lo, hi)
    gaps = [b - a for a, b in zip([-1] + at, at + [cycles])]
    assert max(gaps) <= 2 * cycles / kills + 1


def test_plan_is_the_seeds(soak):
    assert soak.make_plan(1000, 50, seed=3) == soak.make_plan(1000, 50, seed=3)
    assert soak.make_plan(1000, 50, seed=3) != soak.make_plan(1000, 50, seed=4)


def test_plan_kinds_and_delays(soak):
    for seed in range(20):
        kills = [k for k in soak.make_plan(1000, 50, seed=seed) if k]
        kinds = collections.Counter(k.kind for k in kills)
        assert set(kinds) == set(soak.KINDS)
        assert kinds["dockerd"] <= len(kills) / 6  # each takes seconds
        assert abs(kinds["worker"] - kinds["master"]) <= 1
        assert all(0 <= k.delay <= 0.5 for k in kills)


def test_plan_limits(soak):
    assert len(kill_cycles(soak.make_plan(10, 10, seed=1))) == 10
    assert soak.make_plan(10, 0, seed=1, extra_rate=0) == [None] * 10
    with pytest.raises(ValueError):
        soak.make_plan(10, 11, seed=1)
    with pytest.raises(SystemExit):
        soak.parse_args(["--cycles", "10", "--kills", "11"])


def test_kinds_never_more_dockerd_than_a_sixth(soak):
    for n in range(0, 60):
        kinds = soak.kill_kinds(n, random.Random(n))
        assert len(kinds) == n and kinds.count("dockerd") <= n / 6


# -- the operations ------------------------------------------------------------------------

def box(soak, name, running=True, nets=("a",), port=None):
    return soak.Box(name, running, {n: soak.Addr("10.200.0.2", "10.200.0.1", "e" * 64)
                                    for n in nets}, port)


def ops(soak, boxes, networks=("a", "b"), extra=None, extra_age=0, max_live=12, n=300):
    rng = random.Random(1)
    return [soak.choose_op(rng, boxes, list(networks), extra, extra_age, max_live)
            for _ in range(n)]


def test_no_run_at_the_limit(soak):
    boxes = [box(soak, f"c{i}") for i in range(12)]
    chosen = ops(soak, boxes)
    assert "run" not in {op for op, _ in chosen}
    assert "rm" in {op for op, _ in chosen}
    assert "run" in {op for op, _ in ops(soak, boxes[:11])}


def test_connect_and_disconnect_targets(soak):
    boxes = [box(soak, "one", nets=("a",)), box(soak, "two", nets=("a", "b")),
             box(soak, "off", running=False, nets=("a",))]
    chosen = ops(soak, boxes)
    names = {b.name: b for b in boxes}
    for op, t in chosen:
        if op == "connect":
            assert t["network"] not in names[t["container"]].networks
            assert names[t["container"]].running
        if op == "disconnect":  # only a second network: each keeps one
            assert t["container"] == "two" and t["network"] in ("a", "b")
        if op == "start":
            assert t["container"] == "off"
        if op in ("stop", "restart"):
            assert t["container"] != "off"
    assert {"connect", "disconnect", "start", "stop", "restart", "rm", "run"} <= \
        {op for op, _ in chosen}


def test_extra_network_lives_a_while(soak):
    assert "netrm" not in {op for op, _ in ops(soak, [], extra="x", extra_age=3)}
    assert "netcreate" not in {op for op, _ in ops(soak, [], extra="x", extra_age=30)}
    assert "netrm" in {op for op, _ in ops(soak, [], extra="x", extra_age=30, n=2000)}
    assert "netcreate" in {op for op, _ in ops(soak, [], n=2000)}


def test_parse_container(soak):
    b = soak.parse_container({
        "Name": "/soak-c1-abc", "State": {"Running": True, "Restarting": False},
        "HostConfig": {"PortBindings": {"80/tcp": [{"HostIp": "", "HostPort": "23456"}]}},
        "NetworkSettings": {"Networks": {"n1": {"IPAddress": "10.201.3.2",
                                                "Gateway": "10.201.3.1",
                                                "EndpointID": "ab" * 32}}}})
    assert b.name == "soak-c1-abc" and b.running and b.port == 23456
    assert b.networks["n1"] == soak.Addr("10.201.3.2", "10.201.3.1", "ab" * 32)
    stopped = soak.parse_container({"Name": "/x", "State": {"Running": True, "Restarting": True},
                                    "HostConfig": {}, "NetworkSettings": {"Networks": None}})
    assert not stopped.running and stopped.networks == {} and stopped.port is None


def test_pick_subnet_avoids_what_is_taken(soak):
    rng = random.Random(5)
    taken = {"default", "via", "10.200.0.0/16", "dev", "10.201.0.0/17", "10.202.3.7", "eth0"}
    for _ in range(200):
        net = soak.pick_subnet(rng, taken)
        assert net.endswith(".0/24")
        assert not net.startswith(("10.200.", "10.202.3."))
        third = int(net.split(".")[2])
        assert not (net.startswith("10.201.") and third < 128)
    assert soak.subnet_needle("10.201.7.0/24") == "10.201.7."


def test_ppid_of_a_command_with_parens(soak):
    assert soak.ppid_of("123 (gunicorn: (x) y) S 77 123 123 0 -1") == 77


# -- addresses held twice --------------------------------------------------------------------

def ep(container, endpoint, *addresses):
    return {"Container": container, "Endpoint": endpoint, "Addresses": list(addresses)}


def test_one_holder_per_address_is_fine(soak):
    docker = [("a", "n1", "10.200.1.2"), ("b", "n1", "10.200.1.3"), ("a", "n2", "10.200.2.2"),
              ("stopped", "n1", "")]
    pycni = [ep("a", "e1", "10.200.1.2/24"), ep("b", "e2", "10.200.1.3/24"),
             ep("a", "e3", "10.200.2.2/24")]
    assert soak.held_twice(docker, pycni) == []


def test_two_containers_one_address(soak):
    docker = [("a", "n1", "10.200.1.2"), ("b", "n1", "10.200.1.2")]
    assert soak.held_twice(docker, []) == ["10.200.1.2 held by a, b"]


def test_an_endpoint_docker_does_not_know_holds_a_containers_address(soak):
    docker = [("a", "n1", "10.200.1.2")]
    pycni = [ep("a", "e1", "10.200.1.2/24"), ep("", "e0", "10.200.1.2/24")]
    assert soak.held_twice(docker, pycni) == ["10.200.1.2 held by a, pycni endpoint e0"]


def test_pycni_gives_another_containers_address(soak):
    docker = [("a", "n1", "10.200.1.2"), ("b", "n1", "10.200.1.3")]
    pycni = [ep("a", "e1", "10.200.1.2/24"), ep("b", "e2", "10.200.1.2/24")]
    assert soak.held_twice(docker, pycni) == ["10.200.1.2 held by a, b"]


# -- the table -------------------------------------------------------------------------------

def test_table(soak):
    r = soak.Results(engine="20.10.24", seed=9, cycles_planned=1000, cycles_done=1000)
    r.kills.update(worker=22, master=21, dockerd=8)
    r.ops.update(run=400, rm=300)
    r.recoveries = [1.0, 3.0, 2.0, 9.5]
    r.window_failures = ["cycle 3 run (worker kill): boom"]
    r.failures = ["cycle 9 connect: no\nnewline"]
    text = soak.render_table(r, title="Soak")
    lines = text.splitlines()
    assert lines[:4] == ["Soak", "", "| measure | value |", "|---|---|"]
    rows = dict(ln.strip("|").split(" | ", 1) for ln in lines[4:] if ln.startswith("| "))
    rows = {k.strip(): v.strip() for k, v in rows.items()}
    assert rows["engine version"] == "20.10.24"
    assert rows["cycles (done / planned), seed"] == "1000 / 1000, 9"
    assert rows["kills: worker / master / dockerd restart"] == "22 / 21 / 8"
    assert rows["operations"] == "700 (rm 300, run 400)"
    assert rows["failures during recovery windows (expected)"] == "1"
    assert rows["failures after recovery"] == "1"
    assert rows["recovery time: median / worst"] == "2.50 s / 9.50 s"
    assert rows["addresses held twice"] == "0" and rows["lost networks"] == "0"
    assert "- cycle 9 connect: no newline" in lines  # one line each, below the table
    assert r.bad()


def test_table_of_a_clean_run_without_kills(soak):
    r = soak.Results(engine="28.5.1")
    text = soak.render_table(r)
    assert "| recovery time: median / worst | - / - |" in text
    assert "| recoveries over 120 s (failures) | 0 |" in text
    assert not r.bad()
    r.doubles.add("end: 10.200.1.2 held by a, b")
    assert r.bad() and "| addresses held twice | 1 |" in soak.render_table(r)
