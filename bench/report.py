#!/usr/bin/env python3
"""Turns one bench/run into bench/RESULTS.md (printed on stdout).

Inputs: the JSON lines tupp-bench, bench/run's shell loops and memory.py appended to
--samples ({"key", "samples_ms"} or memory records), and hyperfine's --export-json files
in --hyperfine (one per row, named after the row). Every row shows median, min, max and
the number of samples, and the ratio of its median to the median of its section's
reference row (the first row, marked "ref")."""
import argparse
import json
import os
import platform
import statistics
import subprocess
from datetime import datetime, timezone


def first_line(command):
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=30)
        text = (out.stdout or out.stderr).strip()
        return text.splitlines()[0] if text else "?"
    except (OSError, subprocess.SubprocessError):
        return "not installed"


def load(args):
    series, memory, meta, cpu, usage = {}, {}, {}, {}, {}
    with open(args.samples) as f:
        for line in f:
            record = json.loads(line)
            key = record["key"]
            if "samples_ms" in record:
                series[key] = record["samples_ms"]
                if "cpu_ms" in record:
                    cpu[key] = record["cpu_ms"]
                if "faults" in record:
                    usage[key] = record
            elif key.startswith("usage."):  # page faults and max RSS of a row measured apart
                usage[key[len("usage."):]] = record
            elif key.startswith("memory."):
                memory[key[len("memory."):]] = record
            else:
                meta[key] = record
    for name in os.listdir(args.hyperfine):
        if not name.endswith(".json"):
            continue
        with open(os.path.join(args.hyperfine, name)) as f:
            results = json.load(f)["results"]
        base = name[:-len(".json")]
        for index, result in enumerate(results):
            # several commands in one file: key by position
            key = base if len(results) == 1 else f"{base}.{index}"
            series[key] = [t * 1000 for t in result["times"]]
            cpu[key] = (result["user"] + result["system"]) * 1000
    return series, memory, meta, cpu, usage


def fmt(ms):
    if ms >= 1000:
        return f"{ms / 1000:.2f} s"
    if ms >= 100:
        return f"{ms:.0f} ms"
    if ms >= 10:
        return f"{ms:.1f} ms"
    return f"{ms:.2f} ms"


# Sections: (title, target text, rows); each row: (label, series key). The first row is
# the reference. A target is checked by a function of (medians by key) when given.
SECTIONS = [
    ("Container start, `/bin/true`, no network, same btrfs snapshot", [
        ("crun run (ref)", "start.crun"),
        ("runc run", "start.runc"),
        ("bwrap (pid, net, ipc, uts namespaces, /proc, /dev)", "start.bwrap"),
        ("seed's bash recipe: unshare + hostname + bind + pivot_root + proc + umount -l + chroot", "start.seed"),
        ("**tupp**: TuppRuntime.start → command exited → runtime dir removed (in-process)", "start.tupp"),
        ("tupp: TuppRuntime.start returns (command exec'd)", "start.tupp.exec"),
        ("tupp: one `tupp-bench start` process (incl. Swift process start-up)", "start.tupp-oneshot"),
    ], ("tupp ≤ 1.0× crun (issue 4)", lambda m: m["start.tupp"] <= m["start.crun"])),
    ("Confinement: the same start with tupp's default seccomp profile and a cgroup of its own (created and removed "
     "with the container), interleaved round by round with the plain start", [
        ("tupp start, no seccomp filter, no cgroup (ref)", "start.tupp"),
        ("**tupp start, default seccomp + cgroup** on this host's hierarchies", "start.tupp.confined"),
        ("tupp start, default seccomp + cgroup, the v2 path (cgroup2 tree, init born in its cgroup)", "start.tupp.confined-v2"),
        ("tupp: start returns, no seccomp, no cgroup", "start.tupp.exec"),
        ("tupp: start returns, default seccomp + cgroup", "start.tupp.confined.exec"),
        ("tupp: start returns, default seccomp + cgroup v2 path", "start.tupp.confined-v2.exec"),
    ], ("≤ +1 ms median (issue 15)", lambda m: m["start.tupp.confined"] - m["start.tupp"] <= 1.0)),
    ("User namespaces (`userns` auto): the same start in a user namespace of its own — idmapped rootfs, /dev made by "
     "the shim, the init cloned from inside — interleaved round by round", [
        ("tupp start, default seccomp + cgroup, host's user namespace (ref)", "start.tupp.confined"),
        ("**tupp start, default seccomp + cgroup, `userns: auto`**", "start.tupp.confined.userns"),
        ("tupp start, no seccomp filter, no cgroup, host's user namespace", "start.tupp"),
        ("tupp start, no seccomp filter, no cgroup, `userns: auto`", "start.tupp.userns"),
        ("tupp: start returns, default seccomp + cgroup, `userns: auto`", "start.tupp.confined.userns.exec"),
    ], ("≤ +1 ms median (issue 16)", lambda m: m["start.tupp.confined.userns"] - m["start.tupp.confined"] <= 1.0)),
    ("What `userns: auto` would cost without idmapped mounts: a recursive chown of a fresh snapshot into the "
     "container's range, per container start (not counting the snapshot)", [
        ("tupp start, `userns: auto`, idmapped (ref)", "start.tupp.confined.userns"),
        ("chown -R of the busybox image's snapshot", "userns.chown.busybox"),
        ("chown -R of a 10,000-file tree's snapshot", "userns.chown.tree10k"),
    ], None),
    ("Cold `tupp apply` of the seed container: snapshot + namespaces + veth + address + route, command started "
     "(pool, image, bridge exist)", [
        ("crun run /bin/true (ref; does less: no snapshot, no network, waits for exit)", "start.crun"),
        ("**tupp apply** tupperware.yaml (CLI process)", "apply.seed"),
    ], [("≤ 1.0× crun run (issue 19)", lambda m: m["apply.seed"] <= m["start.crun"]),
        ("no-op plan of it ≤ 0.5× crun run (issue 19)", lambda m: m["plan.1"] <= 0.5 * m["start.crun"])]),
    ("Network setup for one container: veth with the peer created in the netns, host end on the bridge, "
     "lo + eth0 up, address, default route", [
        ("`ip` CLI recipe, 6 commands (`ip link add … netns`, alias, `ip -n` ×4) (ref)", "net.ip"),
        ("**tupp**: NetlinkSession.host() + plug (libnl-route-3)", "net.tupp"),
    ], ("≤ 3 ms median (issue 5)", lambda m: m["net.tupp"] <= 3.0)),
    ("Publishing one more port: read the table back, change it (a namespace stands in for the host)", [
        ("nft CLI: `nft -j list table` + `nft -f` with the same two DNAT rules (ref)", "ports.add.nft"),
        ("**tupp**: PublishedPorts.reconcile (libnftables in-process: read back, diff, one transaction)", "ports.add.tupp"),
        ("tupp: the first port (table, four chains and three rules from nothing)", "ports.first.tupp"),
        ("tupp: loading libnftables and its first context (once per process; one sample)", "ports.load.tupp"),
    ], None),
    ("Reading the port table back (what every plan with published ports pays)", [
        ("`nft -j list table` (ref)", "ports.observe.nft"),
        ("**tupp**: PublishedPorts.observe (libnftables, plus route_localnet and ip_forward)", "ports.observe.tupp"),
    ], None),
    ("Snapshot create (writable snapshot of the busybox image)", [
        ("`btrfs subvolume snapshot` (ref)", "snapshot.create.btrfs"),
        ("**tupp**: ImageStore.snapshot (libbtrfsutil, incl. subvolume info)", "snapshot.create.tupp"),
    ], ("< 1 ms median (issue 3)", lambda m: m["snapshot.create.tupp"] < 1.0)),
    ("Snapshot delete", [
        ("`btrfs subvolume delete` (ref)", "snapshot.delete.btrfs"),
        ("**tupp**: ImageStore.deleteSubvolume (mountinfo check + libbtrfsutil)", "snapshot.delete.tupp"),
    ], None),
    ("Image import of a generated rootfs tarball (warm page cache)", [
        ("GNU `tar -xf` into a subvolume (ref)", "import.tar.gnutar"),
        ("GNU `tar -xf` + `sync -f`", "import.tar.gnutar+sync"),
        ("**tupp**: ImageStore.importImage(.tar) (sha256, btrfs sync, read-only, rename included)", "import.tar.tupp"),
    ], [("tupp ≤ 1.0× `tar -xf` + `sync -f` (issue 19)", lambda m: m["import.tar.tupp"] <= m["import.tar.gnutar+sync"]),
        ("tupp ≤ 1.0× `tar -xf` (issue 3; issue 19 stretch)", lambda m: m["import.tar.tupp"] <= m["import.tar.gnutar"])]),
    ("OCI image layout import (same tree, 3 layers incl. a whiteout)", [
        ("`umoci unpack` (ref; also writes config.json and an mtree manifest)", "import.oci.umoci"),
        ("`umoci raw unpack` (rootfs only)", "import.oci.umoci-raw"),
        ("**tupp**: ImageStore.importImage(.oci) (digests verified)", "import.oci.tupp"),
    ], None),
    ("Volume snapshot: a read-only snapshot of a volume of 10,000 files / 1 GiB", [
        ("`cp -a --reflink=always` of the tree into a fresh subvolume (ref)", "volume.snapshot.cp-reflink"),
        ("`btrfs subvolume snapshot -r`", "volume.snapshot.btrfs"),
        ("**tupp**: VolumeStore.snapshot (libbtrfsutil, read-only from birth)", "volume.snapshot.tupp"),
        ("tupp: VolumeStore.snapshot with quotas on and a limit on the volume", "volume.snapshot.tupp-quotas"),
    ], ("tupp ≤ 0.01× cp --reflink (issue 13)",
        lambda m: m["volume.snapshot.tupp"] <= 0.01 * m["volume.snapshot.cp-reflink"])),
    ("Full export of the same volume into a pipe drained by another thread", [
        ("GNU `tar -cf -` of the tree, warm page cache (ref)", "volume.export.tar"),
        ("GNU `tar -cf -` of a fresh snapshot (cold cache, as send always reads)", "volume.export.tar-cold"),
        ("`btrfs send` of the snapshot", "volume.export.btrfs-send"),
        ("**tupp**: VolumeStore.export(NAME@TAG) (BTRFS_IOC_SEND)", "volume.export.tupp"),
        ("tupp: VolumeStore.export(NAME) (live: temporary snapshot, send, delete)", "volume.export.tupp-live"),
    ], None),
    ("Registry pull of the same 3-layer image from docker-registry on 127.0.0.1 (plain HTTP, warm page cache)", [
        ("`skopeo copy docker://… oci:…` + `umoci unpack` (ref)", "pull.skopeo+umoci"),
        ("**tupp**: ImageStore.importImage(.registry), every layer missing (fetch, verify, unpack, snapshot)", "pull.tupp"),
        ("tupp: a second image sharing the base layer, the first in place", "pull.shared.tupp"),
    ], ("tupp ≤ 0.5× skopeo + umoci (issue 12)", lambda m: m["pull.tupp"] <= 0.5 * m["pull.skopeo+umoci"])),
    ("No-op `tupp plan` (everything applied and running; ratio to 1 container)", [
        ("1 container (ref)", "plan.1"),
        ("10 containers", "plan.10"),
        ("100 containers", "plan.100"),
        ("1,000 containers on one /21 bridge", "plan.1000"),
    ], [("100 containers ≤ 2× 1 container (issue 19)", lambda m: m["plan.100"] <= 2 * m["plan.1"]),
        ("1,000 containers ≤ 200 ms (issue 19)", lambda m: m["plan.1000"] <= 200.0)]),
    ("100 containers from scratch (pool, image, bridge exist; with `--settle 0`, as apply's watch of started "
     "commands is waiting, not work)", [
        ("100 sequential `crun run /bin/true` (ref)", "apply.100.crun"),
        ("**tupp apply** of 100 containers, each with veth + address + route, left running", "apply.100"),
    ], ("≤ 0.5× 100 crun runs (issue 19)", lambda m: m["apply.100"] <= 0.5 * m["apply.100.crun"])),
    ("Destroy of 100 running containers", [
        ("tupp apply of the 100 (ref)", "apply.100"),
        ("**tupp destroy** (100 containers stopped + unplugged + snapshots deleted, image and bridge removed)", "destroy.100"),
    ], ("destroy ≤ apply (issue 19)", lambda m: m["destroy.100"] <= m["apply.100"])),
    ("1,000 busybox containers on one /21 bridge (fewer repetitions)", [
        ("**tupp apply** of 1,000 containers from scratch, `--settle 0` (ref)", "apply.1000"),
        ("**tupp apply** removing the 1,000 (stopped, unplugged, snapshots deleted)", "destroy.1000"),
    ], [("apply ≤ 10 s (issue 19)", lambda m: m["apply.1000"] <= 10000.0),
        ("destroy ≤ apply (issue 19)", lambda m: m["destroy.1000"] <= m["apply.1000"])]),
    ("Binary start-up", [
        ("`/bin/true` (ref)", "startup.0"),
        ("**tupp --version**", "startup.1"),
        ("**tupp validate** manifests/tupperware.yaml", "startup.2"),
    ], [("tupp --version ≤ 1.5× /bin/true + 1 ms (issue 19)", lambda m: m["startup.1"] <= 1.5 * m["startup.0"] + 1),
        ("tupp validate ≤ 1.5× /bin/true + 1 ms (issue 19)", lambda m: m["startup.2"] <= 1.5 * m["startup.0"] + 1)]),
]


def usage_text(record):
    """Median page faults (minor + major), and median max RSS where measured."""
    if not record:
        return "—"
    text = f"{statistics.median(record['faults']):.0f}"
    if "maxrss_kb" in record:
        text += f" / {statistics.median(record['maxrss_kb']) / 1024:.1f} MiB"
    return text


def table(series, cpu, usage, partial):
    lines = ["| row | median | min | max | n | ratio to ref | CPU user+sys (mean) | page faults / max RSS (median) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    medians = {key: statistics.median(values) for key, values in series.items() if values}
    verdicts = []
    for title, rows, targets in SECTIONS:
        # A partial run (bench/run with BENCH_ONLY) leaves out the sections it did not measure.
        if partial and not any(series.get(key) for _, key in rows):
            continue
        lines.append(f"| **{title}** | | | | | | | |")
        # A section without a reference row (its first label lacks "ref") shows no ratio.
        reference = medians.get(rows[0][1]) if "ref" in rows[0][0] else None
        for label, key in rows:
            values = series.get(key)
            if not values:
                lines.append(f"| {label} | missing | | | | | | |")
                continue
            median = medians[key]
            cpu_text = fmt(cpu[key]) if key in cpu else "—"
            ratio = f"{median / reference:.2f}×" if reference else "—"
            lines.append(f"| {label} | {fmt(median)} | {fmt(min(values))} | {fmt(max(values))} | {len(values)} | {ratio} | {cpu_text} | {usage_text(usage.get(key))} |")
        for text, check in ([targets] if isinstance(targets, tuple) else targets or []):
            try:
                verdicts.append((title, text, "met" if check(medians) else "**missed**"))
            except KeyError:
                verdicts.append((title, text, "not measured"))
    return lines, verdicts


def memory_table(memory):
    lines = ["| supervisor | containers | RSS per process (median) | PSS per container (sum/n) | ratio RSS | ratio PSS |",
             "|---|---:|---:|---:|---:|---:|"]
    ref = memory.get("conmon")
    rows = [("conmon 2.x + runc (ref)", "conmon"), ("**tupp-shim**", "tupp-shim"),
            ("**tupp-shim**, default seccomp + cgroup (`tupp-bench resident`)", "tupp-shim-confined")]
    ref_rss = statistics.median(ref["rss_kb"]) if ref else None
    ref_pss = sum(ref["pss_kb"]) / ref["count"] if ref else None
    for label, key in rows:
        record = memory.get(key)
        if not record:
            lines.append(f"| {label} | missing | | | | |")
            continue
        rss = statistics.median(record["rss_kb"])
        pss = sum(record["pss_kb"]) / record["count"]
        lines.append(f"| {label} | {record['count']} | {rss:.0f} KiB | {pss:.0f} KiB | "
                     f"{rss / ref_rss:.2f}× | {pss / ref_pss:.2f}× |" if ref else f"| {label} | {record['count']} | {rss:.0f} KiB | {pss:.0f} KiB | — | — |")
    return lines


def throughput_table(meta, verdicts):
    """iperf3 through the published port (DNAT) against the container address directly;
    higher is better, so the ratio is DNAT / direct."""
    direct, dnat = meta.get("ports.throughput.direct"), meta.get("ports.throughput.dnat")
    lines = ["| path | median | min | max | n | ratio to direct |", "|---|---:|---:|---:|---:|---:|"]
    reference = statistics.median(direct["samples_gbps"]) if direct else None
    for label, record in [("direct to the container address (ref)", direct),
                          ("**through the published port** (nftables DNAT + conntrack)", dnat)]:
        if not record:
            lines.append(f"| {label} | missing | | | | |")
            continue
        values = record["samples_gbps"]
        median = statistics.median(values)
        ratio = f"{median / reference:.2f}×" if reference else "—"
        lines.append(f"| {label} | {median:.2f} Gbit/s | {min(values):.2f} | {max(values):.2f} | {len(values)} | {ratio} |")
    if direct and dnat:
        ratio = statistics.median(dnat["samples_gbps"]) / reference
        verdicts.append(("Published port throughput", "DNAT ≥ 0.9× direct (issue 14)", "met" if ratio >= 0.9 else "**missed**"))
    else:
        verdicts.append(("Published port throughput", "DNAT ≥ 0.9× direct (issue 14)", "not measured"))
    return lines


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", required=True)
    parser.add_argument("--hyperfine", required=True)
    parser.add_argument("--tupp", required=True)
    parser.add_argument("--repo", required=True)
    parser.add_argument("--rounds", type=int, required=True)
    parser.add_argument("--slow-rounds", type=int, required=True)
    parser.add_argument("--partial", action="store_true",
                        help="some sections were not run: leave them out instead of marking them missing")
    args = parser.parse_args()
    series, memory, meta, cpu, usage = load(args)

    cpu_model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kb = int(f.readline().split()[1])
    with open("/etc/debian_version") as f:
        debian = f.read().strip()
    commit = first_line(["git", "-C", args.repo, "rev-parse", "--short", "HEAD"])

    out = []
    out.append("# tupp benchmark results")
    out.append("")
    out.append("Written by `bench/run` from one run; every row of a section was measured in the same run on "
               "the same machine. Do not edit by hand: run `bench/run` (as root) again.")
    out.append("")
    out.append(f"- date: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}")
    out.append(f"- machine: {cpu_model}, {os.cpu_count()} CPUs, {mem_kb / 1048576:.1f} GiB RAM (a VM; other builds may share the CPUs)")
    out.append(f"- kernel: {platform.release()}; Debian {debian}")
    out.append(f"- tupp: `{first_line([args.tupp, '--version'])}` (commit {commit}, release build)")
    out.append(f"- swift: {first_line(['swift', '--version'])}")
    versions = [
        ("crun", ["crun", "--version"]), ("runc", ["runc", "--version"]), ("bwrap", ["bwrap", "--version"]),
        ("umoci", ["umoci", "--version"]), ("skopeo", ["skopeo", "--version"]), ("conmon", ["conmon", "--version"]), ("hyperfine", ["hyperfine", "--version"]),
        ("btrfs-progs", ["btrfs", "--version"]), ("GNU tar", ["tar", "--version"]), ("iproute2", ["ip", "-V"]),
        ("util-linux", ["unshare", "--version"]),
    ]
    out.append("- peers: " + "; ".join(f"{name}: `{first_line(cmd)}`" for name, cmd in versions))
    if "meta.tarball" in meta:
        t = meta["meta.tarball"]
        out.append(f"- tarball: {t['bytes'] / 1e6:.0f} MB, {t['entries']} entries (from this host's /usr: python3.11, "
                   "doc, zoneinfo, i18n, sbin, perl)")
    if "meta.oci" in meta:
        o = meta["meta.oci"]
        out.append(f"- OCI layout: {o['bytes'] / 1e6:.0f} MB on disk (gzip layers), {o['layers']} layers, layers made by GNU tar, added with `umoci raw add-layer`")
    if "meta.volume" in meta:
        v = meta["meta.volume"]
        throughput = []
        for label, key, size in (("tupp export", "volume.export.tupp", v["stream_bytes"]),
                                  ("tar -c warm", "volume.export.tar", v["tar_bytes"]),
                                  ("tar -c cold", "volume.export.tar-cold", v["tar_bytes"])):
            if series.get(key):
                throughput.append(f"{label} {size / 1e6 / (statistics.median(series[key]) / 1000):.0f} MB/s")
        out.append(f"- volume: {v['files']} files, {v['bytes'] / 2**30:.2f} GiB; send stream {v['stream_bytes'] / 1e6:.0f} MB, "
                   f"tar stream {v['tar_bytes'] / 1e6:.0f} MB; throughput (stream bytes / median time): " + ", ".join(throughput))
    if "meta.pull" in meta:
        p = meta["meta.pull"]
        out.append(f"- registry pull: the first image fetched {p['first_bytes'] / 1e6:.1f} MB of blobs, the second "
                   f"(sharing the base layer) {p['shared_bytes'] / 1e6:.3f} MB")
    if "meta.load.start" in meta and "meta.load.end" in meta:
        out.append(f"- load average (1/5/15 min) at start: {meta['meta.load.start']['value']}; at end: "
                   f"{meta['meta.load.end']['value']} (other sessions' builds share these CPUs)")
    out.append(f"- repetitions: {args.rounds} per fast row (more for snapshots and start-up), {args.slow_rounds} for imports "
               "and 100-container rows; one warm-up run (or more) before each")
    out.append("")
    out.append("## Times")
    out.append("")
    lines, verdicts = table(series, cpu, usage, args.partial)
    out += lines
    out.append("")
    noisy = [key for key, values in series.items() if values and min(values) > 0 and max(values) / min(values) > 2]
    out.append("Noise: the CPU column is the mean user+system time of the measured process and the children it "
               "waited for (hyperfine; GNU time for the 100-container loops, where tupp's detached supervisors are not "
               "counted); wall time above it is waiting — for the kernel, for other processes, or for CPUs busy "
               "with other work. Page faults (minor + major, median per run) come from GNU time for the "
               "start-up rows, with the run's max RSS, and from getrusage around each import (tupp-bench's own "
               "threads for tupp, the waited-for children for tar). Rows whose max is more than twice their min: "
               + (", ".join(f"`{k}`" for k in sorted(noisy)) if noisy else "none") + ".")
    out.append("")
    if not args.partial or "ports.throughput.direct" in meta:
        out.append("## TCP throughput through a published port")
        out.append("")
        out.append("iperf3 (3 s after a 1 s warm-up, alternating order) from a namespace standing for another "
                   "machine, through a namespace standing for the host, to a container namespace on its bridge; "
                   "both paths cross the same forwarding hop, so only DNAT and its conntrack entry differ.")
        out.append("")
        out += throughput_table(meta, verdicts)
        out.append("")
    if not args.partial or memory:
        out.append("## Supervisor memory per running container")
        out.append("")
        out += memory_table(memory)
        out.append("")
    out.append("## Targets from the issues")
    out.append("")
    out.append("| section | target | result |")
    out.append("|---|---|---|")
    for key, issue in [("tupp-shim", "issue 4"), ("tupp-shim-confined", "issue 15, confined")]:
        shim = memory.get(key)
        if shim:
            pss = sum(shim["pss_kb"]) / shim["count"]
            verdicts.append(("Supervisor memory", f"≤ 1 MiB amortized per container (PSS) ({issue})",
                             "met" if pss <= 1024 else "**missed**"))
    for title, text, verdict in verdicts:
        out.append(f"| {title.split(':')[0]} | {text} | {verdict} |")
    out.append("")
    print("\n".join(out))


main()
