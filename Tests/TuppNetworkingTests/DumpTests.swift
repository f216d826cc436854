import Glibc
import Testing
import TuppFacts
import TuppNetworking
import TuppSystem
import TuppTestSupport
import TuppTestTools

/// A dump interrupted because links changed while it was read (other containers starting
/// and stopping) is read again from scratch: never a link twice, never a half table.
@Suite("Netlink dumps under churn")
struct DumpTests {
    @Test func anInterruptedDumpIsReadAgainWhole() throws {
        guard try Host.require(.root, .command("/usr/sbin/ip"), .command("/usr/bin/nsenter")) else { return }
        let holder = try NetnsHolder()
        defer { holder.stop() }
        // 300 bridges the dumps read, all inside the holder's namespace: it and
        // everything in it go with the holder.
        let batch = "/tmp/tupp-dump-test-\(getpid())-\(holder.pid).batch"
        try Files.writeAtomically(batch, text: (0..<300).map { "link add d\($0) type bridge" }.joined(separator: "\n") + "\n")
        defer { unlink(batch) }
        let setup = try Spawn.run(["/usr/bin/nsenter", "-t", "\(holder.pid)", "-n", "/usr/sbin/ip", "-batch", batch])
        try #require(setup.status == 0, "\(setup)")
        // Churn: a link added and removed over and over while the dumps run.
        let churn = try Spawn.start(["/usr/bin/nsenter", "-t", "\(holder.pid)", "-n", "/bin/sh", "-c",
                                     "while :; do ip link add churn type bridge; ip link del churn; done"])
        defer {
            kill(churn, SIGKILL)
            var status: Int32 = 0
            _ = waitpid(churn, &status, 0)
        }
        var complete = 0
        for _ in 0..<200 {
            guard case .success(let snapshot) = NetlinkSession.snapshots(ofNamespaces: [holder.path])[0] else { continue }
            let indices = snapshot.links.map(\.index)
            #expect(Set(indices).count == indices.count, "a link listed twice: \(indices.count) entries, \(Set(indices).count) links")
            let bridges = snapshot.links.filter { $0.name.hasPrefix("d") && $0.kind == "bridge" }.count
            #expect(bridges == 300, "\(bridges) of the 300 bridges")
            complete += 1
        }
        #expect(complete >= 190, "only \(complete) of 200 dumps succeeded under churn")
    }
}
