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
        // 300 ifb links the dumps read, all inside the holder's namespace: they go with
        // it. ifb, because a namespace's bridges are torn down slowly enough to hold up the
        // creation of other namespaces (300 of them: 1.9 s), which other tests need.
        let batch = "/tmp/tupp-dump-test-\(getpid())-\(holder.pid).batch"
        try Files.writeAtomically(batch, text: (0..<300).map { "link add d\($0) type ifb" }.joined(separator: "\n") + "\n")
        defer { unlink(batch) }
        let setup = try Spawn.run(["/usr/bin/nsenter", "-t", "\(holder.pid)", "-n", "/usr/sbin/ip", "-batch", batch])
        try #require(setup.status == 0, "\(setup)")
        // Churn: a link renamed back and forth while the dumps run. A rename changes the
        // namespace's device list like an add or a delete does (the kernel then flags a dump
        // running through it as interrupted), without the RCU grace period a deletion holds
        // the global rtnl lock for — other tests keep making their links meanwhile.
        let churn = try Spawn.start(["/usr/bin/nsenter", "-t", "\(holder.pid)", "-n", "/bin/sh", "-c",
                                     "ip link add churn type ifb; while :; do ip link set churn name churx; ip link set churx name churn; done"])
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
            let ifbs = snapshot.links.filter { $0.name.hasPrefix("d") && $0.kind == "ifb" }.count
            #expect(ifbs == 300, "\(ifbs) of the 300 ifb links")
            complete += 1
        }
        #expect(complete >= 190, "only \(complete) of 200 dumps succeeded under churn")
    }
}
