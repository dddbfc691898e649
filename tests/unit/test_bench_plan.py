"""benchmarks/bench.py's parts that need neither root nor Docker: the cells, the options,
the idle test, the scale phase's fill order, rounds and ratios, the latency rows, memory
rows and the summary, with Docker, the kernel and the clock faked."""

import argparse
import random

import pytest

import benchscripts


@pytest.fixture(scope="module")
def bench():
    return benchscripts.load("bench")


# -- cells and options ------------------------------------------------------------------------

def test_default_cells_are_engine_by_plugin_set(bench):
    cells = bench.parse_cells()
    assert [c.label for c in cells] == ["20:1.1", "26:1.1", "28:1.1", "29:1.1", "29:1.9",
                                        "29nft:1.9"]


def test_engines_is_short_for_each_engine_with_debians_plugins(bench):
    assert [c.label for c in bench.parse_cells(engines="20,28")] == ["20:1.1", "28:1.1"]


@pytest.mark.parametrize("cells", ["27:1.1", "29:2.0", "29nft:1.9,x"])
def test_unknown_cells_are_refused(bench, cells):
    with pytest.raises(ValueError):
        bench.parse_cells(cells)


def test_quick_sets_only_what_was_not_given(bench):
    opts = bench.parse_args(["--quick", "--runs", "9"])
    assert (opts.runs, opts.scale, opts.parallel) == (9, 100, 20)
    opts = bench.parse_args([])
    assert (opts.runs, opts.scale, opts.parallel, opts.repeat_scale) == (21, 500, 50, 1)
    assert opts.scale_setups == [bench.ZERO]


def test_scale_setups_take_the_old_spelling(bench):
    opts = bench.parse_args(["--scale-setups", "zero,bridge,direct"])
    assert opts.scale_setups == [bench.ZERO, bench.DIRECT]


@pytest.mark.parametrize("argv", [["--cells", "20:1.1", "--engines", "20"],
                                  ["--scale-setups", "nope"], ["--repeat-scale", "0"]])
def test_bad_options_are_refused(bench, argv):
    with pytest.raises(SystemExit):
        bench.parse_args(argv)


# -- small measures ----------------------------------------------------------------------------

def test_idle_fraction(bench):
    assert bench.idle_fraction((100, 100), (120, 180)) == pytest.approx(0.8)
    assert bench.idle_fraction((5, 5), (5, 5)) == 1.0


def test_wait_idle_needs_two_quiet_windows_in_a_row(bench, monkeypatch):
    # busy, idle, busy, idle, idle: quiet after the fifth window
    windows = iter([0.5, 0.9, 0.5, 0.9, 0.85, 0.9])
    seen = []
    monkeypatch.setattr(bench.time, "sleep", lambda s: None)
    monkeypatch.setattr(bench, "cpu_times", lambda: (0, 0))
    monkeypatch.setattr(bench, "idle_fraction", lambda a, b: seen.append(1) or next(windows))
    assert bench.wait_idle(timeout=60) is True
    assert len(seen) == 5


def test_agreement(bench):
    assert bench.agreement([0.98]) == "0.98x"
    assert bench.agreement([0.98, 1.03]) == "0.98x / 1.03x (differ by 0.05x)"


def test_scale_points(bench):
    assert bench.scale_points(500) == [10, 100, 250, 500]
    assert bench.scale_points(100) == [10, 50, 100]


def test_fmt_mem_puts_pss_first(bench):
    assert bench.fmt_mem((59.4, 40.6)) == "41 (59)"
    assert bench.fmt_mem(None) == "-"


# -- a cell, Docker faked ----------------------------------------------------------------------

class FakeDocker:
    """docker run --rm timed at a fixed cost per network plus a cost per live container."""

    def __init__(self, bench, cost, per_live=0.0):
        self.bench, self.cost, self.per_live = bench, cost, per_live
        self.live = {}
        self.order = []
        self.timed_at = []  # live containers per network at each timed run

    def timed_run(self, net, extra=()):
        self.timed_at.append(sorted(len(v) for v in self.live.values()))
        live = sum(len(v) for v in self.live.values())
        return self.cost[net] + self.per_live * live, True

    def docker(self, *args, check=True, timeout=300):
        if args[:2] == ("run", "-d"):
            net = args[args.index("--network") + 1]
            self.live.setdefault(net, []).append(args[args.index("--name") + 1])
            self.order.append(net)
        elif args[:2] == ("rm", "-f"):
            for net in self.live:
                self.live[net] = [c for c in self.live[net] if c not in args[2:]]
        return argparse.Namespace(returncode=0, stdout="", stderr="")


class FakeMover:
    def __init__(self, tag):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    def sample(self):
        return 0.018


@pytest.fixture
def cell(bench, monkeypatch):
    """A CellBench on engine 28 with the setups' networks named but nothing made."""
    opts = bench.parse_args(["--quick", "--scale-setups", "zero,direct", "--repeat-scale", "2"])
    b = bench.CellBench(opts, bench.Cell("28", "1.9"), ["/x/cni"], "1.9.1")
    b.version, b.backend, b.at_join = "28.5.2+dfsg4", "iptables", True
    b.setups = {bench.ZERO: "zc", bench.DIRECT: "dr", bench.CONFLIST: "cl", bench.BRIDGE: "br",
                "--network none": "none"}
    b.fresh_memory = (59.0, 40.0)
    fake = FakeDocker(bench, {"zc": 0.400, "dr": 0.370, "cl": 0.450, "br": 0.380, "none": 0.280},
                      per_live=0.0005)
    monkeypatch.setattr(bench, "timed_run", fake.timed_run)
    monkeypatch.setattr(bench, "docker", fake.docker)
    monkeypatch.setattr(bench, "LinkMover", FakeMover)
    monkeypatch.setattr(bench, "memory_mb", lambda pid: (61.0, 44.0))
    monkeypatch.setattr(bench, "server_pid", lambda server: 1)
    monkeypatch.setattr(bench.time, "sleep", lambda s: None)
    monkeypatch.setattr(b, "wait_quiet", lambda: "3 s")
    b.fake = fake
    return b


def test_latency_names_the_engines_mode_and_the_move(bench, cell):
    cell.latency()
    key = cell.key["`docker run` vs bridge, the engine's mode (direct on 28+, handoff on "
                   "20/26) (target <= 1.00x)"]
    assert key == "0.97x (direct)"
    assert cell.key["handoff minus bridge, ms"] == "20 ms"
    assert cell.key["handoff's extra link move (kernel), ms"] == "18 ms"
    rows = {r[0]: r for r in cell.rows}
    assert rows["handoff minus bridge, ms"][2] == "over the move by 2 ms"


def test_latency_on_an_engine_without_the_netns_at_join_is_a_handoff(bench, cell):
    cell.at_join = False
    cell.latency()
    key = [v for k, v in cell.key.items() if "the engine's mode" in k]
    assert key == ["1.05x (handoff)"]
    assert any("a handoff here" in r[0] for r in cell.rows)


def test_scale_fills_alternately_and_compares_at_the_top(bench, cell):
    random.seed(1)
    cell.scale()
    runs = cell.scale_runs
    assert len(runs) == 2 and runs[0].points == [10, 50, 100]
    # Each network is filled to a point before the timed runs there: all see the same state.
    assert all(len(set(at)) == 1 for at in cell.fake.timed_at)
    assert {at[0] for at in cell.fake.timed_at} == {10, 50, 100}
    assert cell.fake.live == {"br": [], "zc": [], "dr": []}  # all removed afterwards
    key = [v for k, v in cell.key.items() if "pycni at 100 live vs bridge at 100 live" in k]
    assert key == ["1.04x / 1.04x (differ by 0.00x)"]  # 550 ms / 530 ms at 300 live
    assert any(k.startswith("`docker run`, pycni direct at 100 live") for k in cell.key)
    assert cell.after_memory == (61.0, 44.0)


def test_scale_leaves_direct_out_where_it_is_a_handoff(bench, cell):
    cell.at_join = False
    cell.scale()
    assert set(cell.scale_runs[0].at) == {bench.BRIDGE, bench.ZERO}
    assert any("left out" in r[0] for r in cell.rows)


def test_memory_prints_pss_beside_rss(bench, cell):
    cell.scale()
    cell.memory()
    key = [(k, v) for k, v in cell.key.items() if k.startswith("pycni PSS (RSS)")]
    assert key == [("pycni PSS (RSS) master + worker: just started / after 100 came and went "
                    "(target PSS <= 40 MB)", "40 (59) / 44 (61) MB")]


def test_memory_without_the_scale_phase(bench, cell):
    cell.memory()
    assert any(v == "40 (59) / (no scale phase) MB" for v in cell.key.values())


def test_table_and_summary_name_engine_backend_and_plugins(bench, cell):
    cell.latency()
    assert "### Docker 28.5.2, iptables, CNI plugins 1.9.1 (cell 28:1.9)" in cell.table()
    text = bench.summary_table([cell], [(bench.Cell("29", "1.9"), "no tarball")])
    assert "| measure | Docker 28.5.2, iptables, CNI plugins 1.9.1 |" in text
    assert "cell 29:1.9 skipped: no tarball" in text


def test_link_mover_moves_one_link_back_and_forth_and_removes_its_netns(bench, monkeypatch,
                                                                         tmp_path):
    class NS:
        def __init__(self, name):
            self.name, self.path, self.deleted = name, str(tmp_path / name), False
            open(self.path, "w").close()

        def run(self, fn, *args):
            where.append(self.name)
            return fn(*args)

        def delete(self):
            self.deleted = True

    where, made, moves = [], [], []
    monkeypatch.setattr(bench.netns, "create", lambda name: made.append(NS(name)) or made[-1])
    fake_rtnl = argparse.Namespace(add_veth=lambda *a: None,
                                   move_link=lambda index, name, fd: moves.append(name))
    monkeypatch.setattr(bench, "rtnl", fake_rtnl)
    monkeypatch.setattr(bench.socket, "if_nametoindex", lambda name: 7)
    with bench.LinkMover("abc123") as mover:
        samples = [mover.sample() for _ in range(3)]
    assert all(s >= 0 for s in samples) and len(moves) == 3
    # made in the first, then moved from the first, the second, the first again
    assert where == ["pycni-bench-abc123-mva", "pycni-bench-abc123-mva",
                     "pycni-bench-abc123-mvb", "pycni-bench-abc123-mva"]
    assert all(ns.deleted for ns in made) and len(made) == 2


def test_main_runs_each_cell_skips_what_cannot_run_and_restarts_the_engine_before(
        bench, monkeypatch, capsys):
    started = []

    class Cell:
        def __init__(self, opts, cell, bin_dirs, version):
            self.cell, self.bin_dirs, self.scale_runs = cell, bin_dirs, []
            self.title = f"cell {cell.label} on {bin_dirs[0]} ({version})"
            self.key = {"k": "v"}

        def run_phases(self):
            pass

        def cleanup(self):
            pass

        def table(self):
            return f"table of {self.cell.label}"

    def prepare(cell):
        if cell.engine == "29":
            return None, None, "no tarball"
        return f"/cni/{cell.plugins}", cell.plugins + ".1", None

    monkeypatch.setattr(bench.sys, "argv", ["bench.py", "--cells", "20:1.1,29:1.9,28:1.9"])
    monkeypatch.setattr(bench, "current_engine", lambda: "26")
    monkeypatch.setattr(bench.Interrupted, "clean", classmethod(lambda cls: None))
    monkeypatch.setattr(bench, "prepare", prepare)
    monkeypatch.setattr(bench, "start_engine", started.append)
    monkeypatch.setattr(bench, "CellBench", Cell)
    bench.main()
    out = capsys.readouterr()
    assert started == ["20", "28", "26"]
    assert "cell 29:1.9 skipped: no tarball" in out.err
    assert "| measure | cell 20:1.1 on /cni/1.1 (1.1.1) | cell 28:1.9 on /cni/1.9 (1.9.1) |" \
        in out.out
    assert "cell 29:1.9 skipped: no tarball" in out.out
