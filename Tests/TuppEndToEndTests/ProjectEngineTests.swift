import Glibc
import Testing
import TuppSystem
import TuppTestSupport

/// Several projects on one host (issue 21): each prunes and destroys only its own, shares
/// the pool, images and networks it declares like the others, and never takes over
/// another's container. Witnessed with /proc, /sys/class/net, mountinfo and btrfs-progs.
@Suite(.serialized) struct ProjectEngineTests {
    /// manifests/web.yaml with this test's paths, a second bridge and subnet of its own.
    static func webManifest(_ i: Installation) throws -> String {
        let text = try #require(try Files.readText("\(Built.repository)manifests/web.yaml"))
        var derived = text
        for (from, to) in [("/var/lib/tupp/pool.img", "\(i.root.path)/pool.img"), ("/var/lib/tupp/pool", "\(i.root.path)/pool"),
                           ("bridge: tupp1", "bridge: \(i.bridge)w"), ("172.18.0.0/24", "10.215.\(i.subnetOctet).0/24")] {
            #expect(derived.contains(from), "manifests/web.yaml changed: this test must follow")
            derived = derived.replacing(from, with: to)
        }
        try Files.createDirectory("\(i.root.path)/web-content")
        try Files.writeAtomically("\(i.root.path)/web-content/index.html", text: "hello\n", mode: 0o644)
        return try i.manifest("web.yaml", derived)
    }

    func subvolumeUUID(_ path: String) throws -> String? {
        let out = try Spawn.run(["btrfs", "subvolume", "show", path])
        guard out.status == 0 else { return nil }
        for line in out.stdout.split(separator: "\n") {
            let text = String(line).trimmingCharacters()
            if text.hasPrefix("UUID:") { return String(text.dropFirst("UUID:".count)).trimmingCharacters() }
        }
        return nil
    }

    func isMounted(_ path: String) throws -> Bool { try MountInfo.read().contains { $0.mountPoint == path } }

    @Test func theSeedAndWebShareThePoolAndImageAndDestroyOnlyTheirOwn() throws {
        guard try ready(), try Host.require(.command("/usr/bin/btrfs")) else { return }
        let i = try Installation()
        defer { i.cleanupLeavingNothing() }
        let seed = try i.manifest("tupperware.yaml", try SeedTests.seedManifest(i))
        let web = try Self.webManifest(i)
        try i.apply(seed)
        let seedPID = try #require(try i.pid("tupperware"))
        let box = try #require(try subvolumeUUID("\(i.root.path)/pool/images/box"))

        // web's plan does not touch the seed's container or network.
        let plan = try i.tupp("plan", web)
        #expect(plan.status == 0, "\(plan)")
        #expect(!plan.stdout.contains("container.tupperware") && !plan.stdout.contains("network.docker"), "\(plan.stdout)")
        #expect(plan.stdout.contains("now also declared by project web (shared with project tupperware)"), "\(plan.stdout)")
        try i.apply(web)
        #expect(try i.pid("tupperware") == seedPID && isProcessAlive(seedPID), "the seed's container kept its process")
        #expect(try subvolumeUUID("\(i.root.path)/pool/images/box") == box, "one box image, shared")
        #expect(Files.exists("/sys/class/net/\(i.bridge)w"))
        let ls = try i.tupp("ls").stdout
        #expect(ls.contains("tupperware") && ls.contains("web"), "\(ls)")
        #expect(try i.tupp("status", "--project", "web").stdout.split(separator: "\n").count == 4, "web-1, web-2, client")

        // Destroying web leaves the seed's container, the pool and the shared image alone.
        let destroy = try i.tupp("destroy", web)
        #expect(destroy.status == 0, "\(destroy)")
        #expect(destroy.stdout.contains("kept: also declared by project tupperware"), "\(destroy.stdout)")
        #expect(try i.pid("tupperware") == seedPID && isProcessAlive(seedPID))
        #expect(try isMounted("\(i.root.path)/pool"))
        #expect(try subvolumeUUID("\(i.root.path)/pool/images/box") == box)
        #expect(try subvolumeUUID("\(i.root.path)/pool/containers/web-1") == nil)
        #expect(!Files.exists("/sys/class/net/\(i.bridge)w"))
        #expect(try i.tupp("apply", seed).stdout.contains("No changes."))
        try i.expectClean(seed)
    }

    func project(_ name: String, network: String, containers: String) -> String {
        """
        version: 1
        project: \(name)
        storage:
          root: {{ROOT}}/pool
          device: { file: {{ROOT}}/pool.img, size: 256MiB }
        images:
          box: { busybox: /bin/busybox }
        \(network)
        containers:
        \(containers)
        """
    }

    @Test func aNetworkTwoProjectsDeclareStaysUntilNeitherDoes() throws {
        guard try ready() else { return }
        let i = try Installation()
        defer { i.cleanupLeavingNothing() }
        let net = "networks:\n  net: { bridge: {{BRIDGE}}, subnet: {{SUBNET}} }"
        let a = try i.manifest("a.yaml", project("a", network: net, containers: service("one", extra: "    network: { attach: net }")))
        let b = try i.manifest("b.yaml", project("b", network: net, containers: service("two", extra: "    network: { attach: net }")))
        try i.apply(a)

        // b joins the network; a crash at any point of that apply converges.
        let traced = try i.tupp(["apply", b], environment: ["TUPP_TEST_CHECKPOINTS=1"])
        #expect(traced.status == 0, "\(traced)")
        let points = traced.stderr.split(separator: "\n").filter { $0.hasPrefix("tupp checkpoint ") }
        #expect(points.contains { $0.contains("network.net: recorded ready") }, "\(points)")
        for n in 1...points.count {
            #expect(try i.tupp("destroy", b).status == 0)
            let crashed = try i.tupp(["apply", b], environment: ["TUPP_TEST_CRASH_AT=\(n)"])
            #expect(crashed.status == 128 + SIGKILL, "killed at \(points[n - 1]): \(crashed)")
            try i.apply(b)
            #expect(try i.tupp("apply", b).stdout.contains("No changes."), "after a crash at \(points[n - 1])")
            #expect(try i.tupp("apply", a).stdout.contains("No changes."), "a untouched after a crash at \(points[n - 1])")
        }
        #expect(try Ping.reaches(try #require(try i.address(of: "two"))))

        // A different declaration of the shared network is refused, naming both files.
        let bMTU = try i.manifest("b-mtu.yaml", project("b", network: "networks:\n  net: { bridge: {{BRIDGE}}, subnet: {{SUBNET}}, mtu: 1400 }",
                                                        containers: service("two", extra: "    network: { attach: net }")))
        let refused = try i.tupp("plan", bMTU)
        #expect(refused.status == 1)
        #expect(refused.stdout.contains("network.net is declared differently by project b (\(bMTU):") && refused.stdout.contains("project a (\(a):"),
                "\(refused.stdout)")

        // b drops the network: kept for a. Then a drops it: gone.
        let bAlone = try i.manifest("b.yaml", project("b", network: "", containers: ""))
        let dropped = try i.tupp("apply", bAlone)
        #expect(dropped.status == 0 && dropped.stdout.contains("kept: also declared by project a"), "\(dropped)")
        #expect(Files.exists("/sys/class/net/\(i.bridge)"))
        let aAlone = try i.manifest("a.yaml", project("a", network: "", containers: ""))
        try i.apply(aAlone)
        #expect(!Files.exists("/sys/class/net/\(i.bridge)"))
        // The pool and image stay while b declares them; then both go.
        let keep = try i.tupp("destroy", "--include-storage", aAlone)
        #expect(keep.status == 0 && keep.stdout.contains("kept: also declared by project b"), "\(keep)")
        #expect(try isMounted("\(i.root.path)/pool"))
        try i.expectClean(bAlone)
    }

    @Test func aContainerNameUsedByTwoProjectsIsRefused() throws {
        guard try ready() else { return }
        let i = try Installation()
        defer { i.cleanupLeavingNothing() }
        let a = try i.manifest("a.yaml", project("a", network: "", containers: service("web")))
        let b = try i.manifest("b.yaml", project("b", network: "", containers: service("web")))
        try i.apply(a)
        let pid = try #require(try i.pid("web"))
        let plan = try i.tupp("apply", b)
        #expect(plan.status == 1)
        #expect(plan.stdout.contains("container.web belongs to project a (\(a):"), "\(plan)")
        #expect(try i.pid("web") == pid && isProcessAlive(pid), "not taken over")
        #expect(try i.tupp("destroy", b).status == 0)
        #expect(try i.pid("web") == pid, "b's destroy leaves a's container alone")
        try i.expectClean(a)
    }
}
