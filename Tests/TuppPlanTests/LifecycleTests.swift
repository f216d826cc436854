import Testing
import TuppFacts
import TuppManifest
import TuppPlan

/// The pure side of service lifecycles: dependency conditions, `--wait`'s readiness,
/// settling, `restart: true` edges and a container stopped on purpose.
@Suite struct LifecycleTests {
    func process(_ state: ContainerState, restarts: Int = 0, exit: TuppFacts.ExitStatus? = nil, health: HealthStatus? = nil,
                 ran: Double? = nil) -> ProcessObservation {
        var p = ProcessObservation(state: state, shimPID: 10, shimStartTime: 1, initPID: state == .running ? 11 : 0, initStartTime: 2,
                                   restarts: restarts, startedAt: 100, lastExit: exit.map { ExitRecord(status: $0, at: 101) },
                                   error: nil, namespaces: [:])
        p.health = health
        p.lastRunMilliseconds = ran
        return p
    }

    @Test func conditionsOfADependency() {
        #expect(ContainerReadiness.judge(.started, process(.running)) == .holds)
        #expect(ContainerReadiness.judge(.started, process(.absent)) == .pending("it is not started"))
        #expect(ContainerReadiness.judge(.healthy, process(.running, health: .starting)) == .pending("it is starting"))
        #expect(ContainerReadiness.judge(.healthy, process(.running, health: .unhealthy), lastHealth: "exit code 1: refused")
            == .pending("it is unhealthy; last health check: exit code 1: refused"))
        #expect(ContainerReadiness.judge(.healthy, process(.running, health: .healthy)) == .holds)
        #expect(ContainerReadiness.judge(.healthy, process(.running)) == .pending("it has no health check"))
        #expect(ContainerReadiness.judge(.completed, process(.running)) == .pending("it is running"))
        #expect(ContainerReadiness.judge(.completed, process(.exited, exit: .code(0))) == .holds)
        #expect(ContainerReadiness.judge(.completed, process(.exited, exit: .code(2))) == .failed("it ended with exit code 2"))
    }

    @Test func readinessForWait() {
        #expect(ContainerReadiness.ready(process(.running), hasHealthcheck: false, restart: .always) == .holds)
        #expect(ContainerReadiness.ready(process(.running, health: .starting), hasHealthcheck: true, restart: .always)
            == .pending("its health check has not passed yet"))
        #expect(ContainerReadiness.ready(process(.exited, exit: .code(0)), hasHealthcheck: false, restart: .no) == .holds, "a job that completed")
        #expect(ContainerReadiness.ready(process(.exited, exit: .code(1), ran: 40), hasHealthcheck: false, restart: .no)
            == .failed("it exited with code 1 after 40 ms"))
        #expect(ContainerReadiness.ready(process(.restarting, restarts: 2, exit: .code(1), ran: 40), hasHealthcheck: false, restart: .onFailure)
            == .pending("it is restarting (exited with code 1 after 40 ms (restarting, attempt 3))"))
    }

    @Test func aCommandThatDoesNotStayUpIsReportedWithItsAttempt() {
        #expect(ContainerReadiness.settled(process(.running), restartsAtStart: 0, restart: .always) == nil)
        let looping = ContainerReadiness.settled(process(.restarting, restarts: 2, exit: .code(1), ran: 40), restartsAtStart: 0, restart: .onFailure)
        #expect(looping?.crashing == true && looping?.note == "exited with code 1 after 40 ms (restarting, attempt 3)")
        let restarted = ContainerReadiness.settled(process(.running, restarts: 1, exit: .signal(9), ran: 300), restartsAtStart: 0, restart: .always)
        #expect(restarted?.crashing == true && restarted?.note == "was killed by signal 9 after 300 ms (restarted, attempt 1)")
        let job = ContainerReadiness.settled(process(.exited, exit: .code(0), ran: 5), restartsAtStart: 0, restart: .no)
        #expect(job?.crashing == false && job?.note == "exited with code 0 after 5 ms", "a job that finished is not a crash")
    }

    func spec(_ name: String, dependsOn: [String: Dependency] = [:]) -> ContainerSpec {
        var c = Container(name: name, image: "box", command: ["sh"])
        c.lifecycle.dependsOn = dependsOn
        return ContainerSpec(c, network: nil, address: nil)
    }

    func change(_ name: String, _ action: Plan.Action, effect: ChangeEffect? = nil, dependsOn: [String: Dependency] = [:]) -> Plan.ResourceChange {
        Plan.ResourceChange(address: ResourceAddress(.container, name), action: action, before: [:], after: [:], effect: effect,
                            spec: spec(name, dependsOn: dependsOn))
    }

    @Test func restartTrueOnAnEdgeRestartsTheDependentAfterItsDependency() {
        var changes: [ResourceAddress: Plan.ResourceChange] = [:]
        for c in [change("db", .replace, effect: .replace),
                  change("app", .noop, dependsOn: ["db": Dependency(.healthy, restart: true)]),
                  change("worker", .noop, dependsOn: ["db": Dependency(.healthy)]),
                  change("proxy", .noop, dependsOn: ["app": Dependency(.started, restart: true)])] {
            changes[c.address] = c
        }
        ContainerReadiness.propagateRestarts(&changes)
        let app = changes[ResourceAddress(.container, "app")]!
        #expect(app.action == .update && app.effect == .restart)
        #expect(app.reasons.first?.message == "container.db is replaced: restarted after it (dependsOn restart: true)")
        #expect(changes[ResourceAddress(.container, "worker")]!.action == .noop, "without restart: true the edge only orders starts")
        #expect(changes[ResourceAddress(.container, "proxy")]!.effect == .restart, "a restart propagates along restart: true edges")
    }

    @Test func lifecycleAttributesOnlyWhenDeclared() {
        let plain = ContainerKind.attributes(spec("web"))
        #expect(plain.keys.allSatisfy { !$0.isWithin(ContainerAttribute.healthcheck) && $0 != ContainerAttribute.stopSignal
            && $0 != ContainerAttribute.dependsOn }, "records of containers without these fields stay equal")
        var c = Container(name: "db", image: "box", command: ["sh"])
        c.lifecycle = Lifecycle(healthcheck: Healthcheck(command: ["pg_isready"], interval: 2), onUnhealthy: .restart,
                                stopSignal: Signal("SIGINT"), dependsOn: ["cache": Dependency(.healthy, restart: true)],
                                envFiles: ["/etc/db.env"], fileEnvironment: ["A": "file", "B": "file"])
        c.env = [("B", "declared")]
        let s = ContainerSpec(c, network: nil, address: nil)
        #expect(s.env == ["A": "file", "B": "declared"], "env overrides the files")
        let a = ContainerKind.attributes(s)
        #expect(a[ContainerAttribute.healthcheck.child("interval")] == .string("2s"))
        #expect(a[ContainerAttribute.stopSignal] == .string("SIGINT"))
        #expect(a[ContainerAttribute.dependsOn] == .strings(["cache: healthy (restart)"]))
        #expect(ContainerAttribute.schema.effect(of: ContainerAttribute.healthcheck.child("command")) == .inPlace)
        #expect(ContainerAttribute.schema.effect(of: ContainerAttribute.envFile) == .inPlace)
    }

    @Test func aContainerStoppedOnPurposeIsNotDrift() {
        let address = ResourceAddress(.container, "web")
        var record = Record(address, status: .ready, attributes: [ContainerAttribute.restart: .string("unless-stopped")])
        record.facts[Record.stoppedFact] = "true"
        let facts = ContainerFacts(contents: nil, host: nil, processes: ["web": process(.stopped, exit: .code(0))])
        let stopped = ContainerKind.interpret(declared: ["web"], records: ["web": record], facts: facts, images: ObservedState(), installation: "i")
        #expect(stopped[address]?.drift.isEmpty == true && stopped[address]?.conditions.isEmpty == true)
        // Under another policy the same stop is repaired by the next apply.
        record.attributes[ContainerAttribute.restart] = .string("always")
        let always = ContainerKind.interpret(declared: ["web"], records: ["web": record], facts: facts, images: ObservedState(), installation: "i")
        #expect(always[address]?.conditions.count == 1)
        // A started container forgets the stop.
        record.setContainerFacts(hostVeth: "v", snapshot: nil, process: process(.running), specDigest: nil)
        #expect(!record.stoppedByUser)
    }
}
