import Glibc
import Testing
import TuppSystem
import TuppTestSupport

/// Kill -9 at every point between side effects (the engine's numbered checkpoints), then
/// prove the host is recoverable: plan shows what was left, apply converges, a second
/// apply has nothing to do, and destroy leaves nothing at all.
@Suite(.serialized) struct CrashTests {
    func manifest(_ i: Installation) throws -> String {
        try i.manifest("m.yaml", smallManifest(
            service("a", extra: "    network: { attach: net }") + service("b", extra: "    network: { attach: net }")))
    }

    /// The checkpoints one run of `arguments` passes, counted by tracing them.
    func checkpoints(_ i: Installation, _ arguments: [String]) throws -> [String] {
        let traced = try i.tupp(arguments, environment: ["TUPP_TEST_CHECKPOINTS=1"])
        #expect(traced.status == 0, "\(traced)")
        return traced.stderr.split(separator: "\n").filter { $0.hasPrefix("tupp checkpoint ") }.map(String.init)
    }

    @Test func applyKilledAtEveryCheckpointConverges() throws {
        guard try ready() else { return }
        let i = try Installation()
        defer { i.cleanupLeavingNothing() }
        let m = try manifest(i)
        let points = try checkpoints(i, ["apply", m])
        #expect(points.count >= 10, "\(points)")
        try i.expectClean(m)

        for (n, point) in points.enumerated() {
            let crashed = try i.tupp(["apply", m], environment: ["TUPP_TEST_CRASH_AT=\(n + 1)"])
            #expect(crashed.status == 128 + SIGKILL, "killed at \(point): \(crashed)")
            let plan = try i.tupp("plan", "--detailed-exitcode", m)
            // Containers are created in parallel, so the n-th point of this run need not be
            // the traced one: a crash after the last record leaves nothing to do (0),
            // anything earlier leaves work the plan shows (2). Never an error (1).
            #expect(plan.status == 0 || plan.status == 2, "after a crash at \(point) the plan is readable: \(plan)")
            if n < points.count - 2 {
                #expect(plan.status == 2, "after a crash at \(point) the plan shows what is left: \(plan)")
            }
            let converge = try i.tupp("apply", m)
            #expect(converge.status == 0, "apply converges after a crash at \(point): \(converge)")
            let again = try i.tupp("apply", m)
            #expect(again.stdout.contains("No changes."), "after a crash at \(point): \(again)")
            for name in ["a", "b"] {
                let address = try #require(try i.address(of: name))
                #expect(try Ping.reaches(address),
                        "\(name) reachable after a crash at \(point)")
            }
            let status = try i.tupp("status", "--json").stdout
            #expect(status.components("\"state\":\"running\"") == 2, "both running after a crash at \(point): \(status)")
            try i.expectClean(m)
        }
    }

    @Test func destroyKilledAtEveryCheckpointFinishes() throws {
        guard try ready() else { return }
        let i = try Installation()
        defer { i.cleanupLeavingNothing() }
        let m = try manifest(i)
        try i.apply(m)
        let points = try checkpoints(i, ["destroy", "--include-storage", m])
        #expect(points.count >= 6, "\(points)")
        for (n, point) in points.enumerated() {
            try i.apply(m)
            let crashed = try i.tupp(["destroy", "--include-storage", m], environment: ["TUPP_TEST_CRASH_AT=\(n + 1)"])
            #expect(crashed.status == 128 + SIGKILL, "killed at \(point): \(crashed)")
            try i.expectClean(m)
        }
    }
}

extension String {
    /// How often `needle` occurs.
    func components(_ needle: String) -> Int {
        var count = 0
        var rest = Substring(self)
        while let r = rest.firstRange(of: needle) {
            count += 1
            rest = rest[r.upperBound...]
        }
        return count
    }
}
