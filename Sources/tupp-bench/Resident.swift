import ArgumentParser
import Glibc
import TuppFacts
import TuppRuntime
import TuppSystem

/// Resident memory of confined supervisors: N containers running `sleep`, each with
/// tupp's default seccomp profile and a cgroup, then RSS and PSS of every tupp-shim from
/// /proc/PID/smaps_rollup (PSS splits shared pages: sum / N is the cost of one more).
struct ResidentMemory: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "resident",
        abstract: "Run N confined containers on ROOTFS, record their supervisors' RSS and PSS, stop and remove them.")

    @Option(help: "The containers' root (shared: they only sleep).")
    var rootfs: String

    @Option(help: "Scratch directory for the runtime directories.")
    var work: String

    @Option(help: "How many containers.")
    var count = 100

    @Option(help: "Parent directory of the containers' cgroups.")
    var cgroupParent = "tupp-bench"

    @Option(help: "Append the record (a JSON line, as bench/memory.py writes) to this file.")
    var out: String

    func run() throws {
        let runtime = Runtime(cacheDirectory: work)
        let placement = CgroupPlacement(layout: try CgroupLayout.host(), parent: cgroupParent)
        var directories: [String] = []
        defer {
            for directory in directories {
                try? runtime.stop(directory: directory, timeout: 0)
                try? runtime.remove(directory: directory)
            }
        }
        var shims: [Int32] = []
        for index in 0..<count {
            let directory = "\(work)/resident-\(index)"
            directories.append(directory)
            let config = ContainerConfig(name: "benchresident\(index)", rootfs: rootfs, command: ["/bin/sleep", "100000"],
                                         stopTimeout: 0, seccomp: .default, cgroup: placement)
            shims.append(try runtime.start(config, directory: directory).shimPID)
        }
        usleep(500_000)
        var rss: [Int] = [], pss: [Int] = []
        for pid in shims {
            guard let text = try Files.readText("/proc/\(pid)/smaps_rollup") else {
                throw SystemError.failure("read", "/proc/\(pid)/smaps_rollup", "supervisor gone")
            }
            for line in text.split(separator: "\n") {
                let words = line.split(separator: " ")
                guard words.count >= 2, let kb = Int(words[1]) else { continue }
                if words[0] == "Rss:" { rss.append(kb) }
                if words[0] == "Pss:" { pss.append(kb) }
            }
        }
        let record = "{\"key\": \"memory.tupp-shim-confined\", \"count\": \(shims.count), \"rss_kb\": \(rss), \"pss_kb\": \(pss)}\n"
        let existing = (try Files.readText(out)) ?? ""
        try Files.writeAtomically(out, text: existing + record, mode: 0o644)
        progress("memory.tupp-shim-confined: \(shims.count) supervisors, PSS \(pss.reduce(0, +) / max(1, pss.count)) kB each on average")
    }
}
