import ArgumentParser

/// Library-level measurements for bench/run: what the tupp CLI cannot isolate (a
/// container start without planning, one snapshot, one container's network setup, one
/// image import, a volume's snapshot and export), each timed against the reference tool in the same process and round.
/// Not part of `swift test`; bench/run drives it and bench/report.py reads its output.
@main
struct TuppBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tupp-bench",
        abstract: "tupp library benchmarks, side by side with the reference tools (run by bench/run).",
        subcommands: [StartTrue.self, ResidentMemory.self, SnapshotBench.self, NetworkBench.self, ImportBench.self, PortsBench.self,
                      VolumeBench.self, PullBench.self, ChownBench.self])
}
