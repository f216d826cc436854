import Testing
import TuppManifest
import TuppPlan
import TuppRender

/// Projects on one host (Compose's scoping): what each project's plan may touch.
@Suite struct ProjectTests {
    /// `desired` as declared by a project, each resource located in `file`.
    func declared(_ m: Manifest, file: String) -> [DesiredResource] {
        desired(m).map { r in
            var r = r
            r.location = "\(file):1:1"
            return r
        }
    }

    /// The host as `resources` declare them, recorded as declared by `projects`.
    func host(_ resources: [DesiredResource], projects: [String]) -> ObservedState {
        var o = matching(resources)
        for address in o.resources.keys {
            o.resources[address]!.projects = Dictionary(uniqueKeysWithValues: projects.map { ($0, "\($0).yaml:1:1") })
        }
        return o
    }

    @Test func creationRecordsTheProject() {
        let plan = Planner.plan(desired: declared(sampleManifest(), file: "web.yaml"), observed: ObservedState(),
                                options: PlanOptions(project: "web"))
        #expect(plan.changes.allSatisfy { $0.projects == ["web": "web.yaml:1:1"] })
        #expect(plan.project == "web")
    }

    @Test func anotherProjectsResourcesAreNeverPrunedOrShown() {
        // Project "web" declares nothing; everything on the host is the seed's.
        let seed = host(desired(sampleManifest()), projects: ["seed"])
        let plan = Planner.plan(desired: [], observed: seed, options: PlanOptions(project: "web"))
        #expect(!plan.hasChanges)
        #expect(PlanText.render(plan) == "No changes. The host matches the manifest.\n")
        // The seed itself would prune them.
        #expect(Planner.plan(desired: [], observed: seed, options: PlanOptions(project: "seed")).actionable.count == 4)
    }

    @Test func aSharedResourceIsKeptWhileAnotherProjectDeclaresIt() {
        var seedOnly = sampleManifest(containers: 0)
        seedOnly.images = [:]
        let observed = host(desired(seedOnly), projects: ["seed", "web"])
        // "web" no longer declares the pool or the network: only their records change.
        let plan = Planner.plan(desired: [], observed: observed, options: PlanOptions(project: "web"))
        #expect(plan.actionable.count == 2)
        for change in plan.actionable {
            #expect(change.action == .update && change.isMembershipOnly)
            #expect(change.projects == ["seed": "seed.yaml:1:1"])
            #expect(change.notes == ["kept: also declared by project seed"])
        }
        #expect(PlanText.render(plan).contains("# no longer declared by project web"))
        // Once no project declares it, the network goes (the pool never does).
        let last = Planner.plan(desired: [], observed: host(desired(seedOnly), projects: ["seed"]), options: PlanOptions(project: "seed"))
        #expect(last.actionable.map(\.address.description) == ["network.br0"])
        #expect(last.actionable.first?.action == .delete)
    }

    @Test func identicalDeclarationsJoinAndDifferingOnesAreRefusedNamingBoth() {
        let m = sampleManifest(containers: 0)
        let shared = Planner.plan(desired: declared(m, file: "web.yaml"), observed: host(desired(m), projects: ["seed"]),
                                  options: PlanOptions(project: "web"))
        #expect(shared.errors.isEmpty)
        let network = shared.actionable.first { $0.address == ResourceAddress(.network, "br0") }
        #expect(network?.isMembershipOnly == true)
        #expect(network?.projects == ["seed": "seed.yaml:1:1", "web": "web.yaml:1:1"])
        #expect(network?.reasons.first?.message == "now also declared by project web (shared with project seed)")

        var other = m
        other.networks["br0"]!.mtu = 9000
        let conflict = Planner.plan(desired: declared(other, file: "web.yaml"), observed: host(desired(m), projects: ["seed"]),
                                    options: PlanOptions(project: "web"))
        #expect(conflict.errors.contains {
            $0.contains("network.br0 is declared differently by project web (web.yaml:1:1) and by project seed (seed.yaml:1:1)")
                && $0.contains("differs in mtu")
        })
    }

    @Test func aContainerNameTakenByAnotherProjectIsRefused() {
        let m = sampleManifest(containers: 1)
        let plan = Planner.plan(desired: declared(m, file: "web.yaml"), observed: host(desired(m), projects: ["seed"]),
                                options: PlanOptions(project: "web"))
        #expect(plan.errors.contains { $0.hasPrefix("container.c0 belongs to project seed (seed.yaml:1:1); container names are unique on a host") })
        #expect(plan.actionable.allSatisfy { $0.address.kind != .container })
    }

    @Test func destroyRemovesOnlyTheProjectsOwnAndKeepsWhatOthersShare() {
        let m = sampleManifest(containers: 1)
        var o = host(desired(m), projects: ["seed", "web"])
        o.resources[ResourceAddress(.container, "c0")]!.projects = ["web": "web.yaml:1:1"]
        let plan = Planner.plan(desired: declared(m, file: "web.yaml"), observed: o, options: PlanOptions(destroy: true, project: "web"))
        #expect(plan.changes.first { $0.address.kind == .container }?.action == .delete)
        for address in [PoolKind.address, ResourceAddress(.image, "box"), ResourceAddress(.network, "br0")] {
            let change = plan.changes.first { $0.address == address }
            #expect(change?.isMembershipOnly == true && change?.notes == ["kept: also declared by project seed"], "\(address)")
        }
        // A container of the same name in another project is not this destroy's.
        o.resources[ResourceAddress(.container, "c0")]!.projects = ["seed": "seed.yaml:1:1"]
        #expect(Planner.plan(desired: declared(m, file: "web.yaml"), observed: o, options: PlanOptions(destroy: true, project: "web"))
            .changes.allSatisfy { $0.action != .delete })
    }

    @Test func recordsFromBeforeProjectsAreAdoptedWithoutRestarting() {
        let m = sampleManifest(containers: 1)
        let legacy = host(desired(m), projects: [])
        let plan = Planner.plan(desired: declared(m, file: "m.yaml"), observed: legacy, options: PlanOptions(project: "shop"))
        #expect(plan.actionable.count == 4)
        #expect(plan.actionable.allSatisfy { $0.isMembershipOnly && $0.effect == .inPlace && $0.projects == ["shop": "m.yaml:1:1"] })
        #expect(PlanText.render(plan).contains("# adopted into project shop (it was made before projects existed)"))
        // Undeclared ones are kept, with a word about why.
        let other = Planner.plan(desired: [], observed: legacy, options: PlanOptions(project: "shop"))
        #expect(!other.hasChanges)
        #expect(other.warnings.contains { $0.contains("container.c0 was made before projects existed") })
    }

    @Test func leftoversWithoutARecordAreClearedByAnyProject() {
        var o = ObservedState()
        o.resources[ResourceAddress(.container, "ghost")] = ObservedResource(ResourceAddress(.container, "ghost"),
                                                                           conditions: [ContainerCondition.leftovers])
        let plan = Planner.plan(desired: [], observed: o, options: PlanOptions(project: "shop"))
        #expect(plan.actionable.map(\.action) == [.delete])
    }
}
