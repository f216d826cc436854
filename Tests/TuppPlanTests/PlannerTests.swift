import PropertyBased
import Testing
import TuppBase
import TuppManifest
import TuppPlan
import TuppRender

/// A small desired state: pool, image, network, two containers.
func sampleManifest(containers: Int = 2) -> Manifest {
    var m = Manifest()
    m.storage = Storage(root: "/pool", device: .init(file: "/pool.img", size: 1 << 30))
    m.images["box"] = Image(name: "box", source: .busybox(path: "/bin/busybox"))
    m.networks["br0"] = Network(name: "br0", bridge: "tupp0", subnet: IPv4Network("10.9.0.0/24")!)
    for i in 0..<containers {
        m.containers["c\(i)"] = Container(name: "c\(i)", image: "box",
                                          network: .init(attach: "br0", address: IPv4Interface("10.9.0.\(10 + i)/24")),
                                          command: ["/bin/sh", "-c", "sleep infinity"], env: [("TERM", "xterm")])
    }
    return m
}

func desired(_ m: Manifest, digest: String = "sha256:aaa") -> [DesiredResource] {
    let addresses = try! AddressAllocator.allocate(m, recorded: [:]).get()
    return DesiredState.resources(m, DesiredContext(imageDigests: Dictionary(uniqueKeysWithValues: m.images.keys.map { ($0, digest) }),
                                                    addresses: addresses))
}

/// The host exactly as `resources` declare it.
func matching(_ resources: [DesiredResource]) -> ObservedState {
    ObservedState(resources.map { ObservedResource($0.address, attributes: $0.attributes, protect: $0.protect) })
}

@Suite struct PlannerTests {
    @Test func emptyHostCreatesEverythingInDependencyOrder() {
        let plan = Planner.plan(desired: desired(sampleManifest()), observed: ObservedState())
        #expect(plan.changes.map(\.action) == Array(repeating: .create, count: 5))
        #expect(plan.changes.map(\.address.description) == ["pool.main", "image.box", "network.br0", "container.c0", "container.c1"])
        #expect(plan.summary == Plan.Summary(add: 5, change: 0, replace: 0, destroy: 0))
    }

    @Test func matchingHostPlansNoChanges() {
        let d = desired(sampleManifest())
        let plan = Planner.plan(desired: d, observed: matching(d))
        #expect(!plan.hasChanges)
        #expect(PlanText.render(plan) == "No changes. The host matches the manifest.\n")
    }

    @Test func hostnameIsUpdatedInPlace() {
        let d = desired(sampleManifest())
        var o = matching(d)
        o.resources[ResourceAddress(.container, "c0")]!.attributes[ContainerAttribute.hostname] = .string("box")
        let plan = Planner.plan(desired: d, observed: o)
        let change = plan.actionable.first!
        #expect(plan.actionable.count == 1)
        #expect(change.action == .update && change.effect == .inPlace)
        #expect(change.reasons.first?.path == ContainerAttribute.hostname)
        #expect(change.reasons.first?.before == .string("box") && change.reasons.first?.after == .string("c0"))
    }

    @Test func commandChangeRestartsTheProcess() {
        let d = desired(sampleManifest())
        var o = matching(d)
        o.resources[ResourceAddress(.container, "c1")]!.attributes[ContainerAttribute.command] = .strings(["/bin/true"])
        let change = Planner.plan(desired: d, observed: o).actionable.first!
        #expect(change.action == .update && change.effect == .restart)
        #expect(PlanText.render(Planner.plan(desired: d, observed: o)).contains("# restarts the process"))
    }

    @Test func imageChangeForcesReplacement() {
        let d = desired(sampleManifest())
        var o = matching(d)
        o.resources[ResourceAddress(.container, "c0")]!.attributes[ContainerAttribute.image] = .string("alpine")
        let plan = Planner.plan(desired: d, observed: o)
        let change = plan.actionable.first!
        #expect(change.action == .replace)
        #expect(change.reasons.first?.forcesReplacement == true)
        let text = PlanText.render(plan)
        #expect(text.contains("-/+ container \"c0\""))
        #expect(text.contains("# forces replacement"))
        #expect(text.contains("the writable snapshot containers/c0 is discarded"))
        #expect(text.contains("Plan: 0 to add, 0 to change, 1 to replace, 0 to destroy."))
    }

    @Test func replacedImageReplacesItsContainers() {
        let d = desired(sampleManifest(), digest: "sha256:new")
        let o = matching(desired(sampleManifest(), digest: "sha256:old"))
        let plan = Planner.plan(desired: d, observed: o)
        #expect(plan.actionable.map(\.address.description) == ["image.box", "container.c0", "container.c1"])
        #expect(plan.actionable.allSatisfy { $0.action == .replace })
        #expect(plan.actionable[1].reasons.contains { $0.message == "image.box is replaced" && $0.forcesReplacement })
    }

    @Test func conditionsDriveActions() {
        let d = desired(sampleManifest())
        var o = matching(d)
        o.resources[ResourceAddress(.container, "c0")]!.conditions = [ContainerCondition.notRunning(why: "process not running (killed by SIGKILL)")]
        o.resources[ResourceAddress(.pool, "main")]!.conditions = [PoolCondition.notMounted(file: "/pool.img", root: "/pool")]
        let plan = Planner.plan(desired: d, observed: o)
        #expect(plan.actionable.map(\.action) == [.update, .update])
        #expect(PlanText.render(plan).contains("# process not running (killed by SIGKILL)"))
    }

    @Test func orphansAreDeletedInReverseDependencyOrder() {
        let d = desired(sampleManifest(containers: 0))
        var o = matching(desired(sampleManifest(containers: 2)))
        o.resources[ResourceAddress(.network, "old")] = ObservedResource(ResourceAddress(.network, "old"), attributes: [NetworkAttribute.bridge: .string("tupp9")])
        o.resources[ResourceAddress(.image, "old")] = ObservedResource(ResourceAddress(.image, "old"), attributes: [:])
        let plan = Planner.plan(desired: d, observed: o)
        #expect(plan.actionable.map(\.address.description) == ["container.c0", "container.c1", "network.old", "image.old"])
        #expect(plan.actionable.allSatisfy { $0.action == .delete && $0.notes == ["not in manifest"] })
        #expect(PlanText.render(plan).contains("# container.c0 will be destroyed (not in manifest)"))
    }

    @Test func noPruneKeepsOrphans() {
        let plan = Planner.plan(desired: desired(sampleManifest(containers: 0)),
                                observed: matching(desired(sampleManifest(containers: 1))),
                                options: PlanOptions(prune: false))
        #expect(!plan.hasChanges)
        #expect(plan.warnings.contains { $0.contains("container.c0") && $0.contains("--no-prune") })
    }

    @Test func foreignObjectsAreNeverTouched() {
        let d = desired(sampleManifest(containers: 0))
        var o = matching(d)
        o.resources[ResourceAddress(.network, "br0")]!.owned = false
        o.resources[ResourceAddress(.container, "stranger")] = ObservedResource(ResourceAddress(.container, "stranger"), owned: false)
        let plan = Planner.plan(desired: d, observed: o)
        #expect(!plan.actionable.contains { $0.address.name == "stranger" })
        #expect(plan.errors.contains { $0.contains("network.br0 exists on the host but was not created by tupp") })
    }

    @Test func protectedResourcesAreNotReplacedOrPruned() {
        var m = sampleManifest(containers: 1)
        m.containers["c0"]!.protect = true
        let d = desired(m)
        var o = matching(d)
        o.resources[ResourceAddress(.container, "c0")]!.attributes[ContainerAttribute.image] = .string("other")
        #expect(Planner.plan(desired: d, observed: o).errors.contains { $0.contains("container.c0 is protected") })

        let gone = Planner.plan(desired: desired(sampleManifest(containers: 0)), observed: matching(d))
        #expect(!gone.actionable.contains { $0.address.name == "c0" })
        #expect(gone.warnings.contains { $0.contains("protected") })
    }

    @Test func poolIsGrownNeverShrunkOrMoved() {
        let d = desired(sampleManifest(containers: 0))
        var o = matching(d)
        o.resources[ResourceAddress(.pool, "main")]!.attributes[PoolAttribute.deviceSize] = .int(1 << 29)
        let grow = Planner.plan(desired: d, observed: o)
        #expect(grow.actionable.first?.action == .update)
        #expect(grow.errors.isEmpty)
        o.resources[ResourceAddress(.pool, "main")]!.attributes[PoolAttribute.deviceSize] = .int(1 << 31)
        #expect(Planner.plan(desired: d, observed: o).errors.contains { $0.contains("shrinking") })
        o.resources[ResourceAddress(.pool, "main")]!.attributes[PoolAttribute.root] = .string("/elsewhere")
        #expect(Planner.plan(desired: d, observed: o).errors.contains { $0.contains("would abandon the existing pool") })
    }

    @Test func destroyPlansEverythingDeclaredInReverse() {
        let d = desired(sampleManifest())
        let plan = Planner.plan(desired: d, observed: matching(d), options: PlanOptions(destroy: true))
        #expect(plan.changes.map(\.address.description) == ["container.c0", "container.c1", "network.br0", "image.box", "pool.main"])
        #expect(plan.changes.allSatisfy { $0.action == .delete })
        #expect(plan.changes.last?.notes.first?.contains("are kept (add --include-storage") == true)
    }

    @Test func driftIsListedFirst() {
        let d = desired(sampleManifest(containers: 1))
        var o = matching(d)
        let address = ResourceAddress(.container, "c0")
        o.resources[address]!.attributes[ContainerAttribute.hostname] = .string("hacked")
        o.resources[address]!.drift = [Drift(address, "hostname \"c0\" → \"hacked\"", path: ContainerAttribute.hostname, recorded: .string("c0"), observed: .string("hacked"))]
        let text = PlanText.render(Planner.plan(desired: d, observed: o))
        #expect(text.hasPrefix("Changed outside tupp:\n  ~ container.c0: hostname \"c0\" → \"hacked\"\n\ntupp will perform"))
    }

    @Test func jsonHasTerraformShape() {
        let d = desired(sampleManifest(containers: 1))
        var o = matching(d)
        o.resources[ResourceAddress(.container, "c0")]!.attributes[ContainerAttribute.image] = .string("alpine")
        let json = PlanJSON.render(Planner.plan(desired: d, observed: o), tuppVersion: "0.1.0").serialized()
        #expect(json.hasPrefix("{\"format_version\":\"1.0\",\"tupp_version\":\"0.1.0\""))
        #expect(json.contains("\"address\":\"container.c0\",\"type\":\"container\",\"name\":\"c0\",\"actions\":[\"delete\",\"create\"]"))
        #expect(json.contains("{\"path\":\"image\",\"before\":\"alpine\",\"after\":\"box\",\"effect\":\"replace\",\"forces_replacement\":true}"))
        #expect(json.contains("\"summary\":{\"add\":0,\"change\":0,\"replace\":1,\"destroy\":0}"))
    }

    @Test func colorOnlyWhenEnabled() {
        let plan = Planner.plan(desired: desired(sampleManifest()), observed: ObservedState())
        #expect(!PlanText.render(plan, style: Style(enabled: false)).contains("\u{1B}["))
        #expect(PlanText.render(plan, style: Style(enabled: true)).contains("\u{1B}[32m"))
    }
}

@Suite struct AllocatorTests {
    func manifest(_ names: [String], subnet: String = "10.9.0.0/24") -> Manifest {
        var m = Manifest()
        m.networks["n"] = Network(name: "n", bridge: "b", subnet: IPv4Network(subnet)!)
        for name in names {
            m.containers[name] = Container(name: name, image: "i", network: .init(attach: "n"), command: ["x"])
        }
        return m
    }

    @Test func allocationIsStableAndIndependentOfOrder() throws {
        let all = try AddressAllocator.allocate(manifest(["a", "b", "c"]), recorded: [:]).get()
        let justB = try AddressAllocator.allocate(manifest(["b"]), recorded: [:]).get()
        #expect(all["b"] == justB["b"])
        #expect(Set(all.values).count == 3)
        let net = IPv4Network("10.9.0.0/24")!
        for a in all.values {
            #expect(net.contains(a.address) && a.address != net.network && a.address != net.broadcast && a.address != net.firstHost)
        }
    }

    @Test func recordedAddressesAreKept() throws {
        let recorded = ["a": IPv4Interface("10.9.0.77/24")!]
        #expect(try AddressAllocator.allocate(manifest(["a", "b"]), recorded: recorded).get()["a"] == recorded["a"])
    }

    @Test func exhaustionIsAnError() {
        // A /30 has two host addresses; the gateway takes one.
        let result = AddressAllocator.allocate(manifest(["a", "b"], subnet: "10.9.0.0/30"), recorded: [:])
        #expect(throws: AddressAllocator.Exhausted.self) { try result.get() }
    }

    @Test func propertyEveryAllocationIsUniqueAndUsable() async {
        await propertyCheck(input: Gen.int(in: 1...60), Gen.int(in: 24...28)) { count, prefix in
            let net = IPv4Network(address: IPv4Address("10.20.0.0")!, prefixLength: prefix)
            let names = (0..<count).map { "c\($0)" }
            let result = AddressAllocator.allocate(manifest(names, subnet: net.description), recorded: [:])
            if UInt64(count) > net.size - 3 {
                #expect(throws: AddressAllocator.Exhausted.self) { try result.get() }
            } else if let map = try? result.get() {
                #expect(Set(map.values.map(\.address)).count == count)
                #expect(map.values.allSatisfy { net.contains($0.address) && $0.address != net.firstHost && $0.address != net.broadcast && $0.address != net.network })
            } else {
                Issue.record("allocation failed with room left")
            }
        }
    }
}

@Suite struct PlanProperties {
    /// Random manifests: whatever is declared, a host that matches it plans no changes,
    /// and an empty host plans exactly one create per resource.
    @Test func observedAsDeclaredMeansNoChanges() async {
        await propertyCheck(input: Gen.int(in: 0...12), Gen.int(in: 0...3), Gen.bool, Gen.letterOrNumber.string(of: 1...12)) { containers, images, nat, word in
            var m = Manifest()
            m.storage = Storage(root: "/p")
            for i in 0..<max(1, images) { m.images["i\(i)"] = Image(name: "i\(i)", source: .tar(path: "/t\(i).tar")) }
            m.networks["n"] = Network(name: "n", bridge: "b0", subnet: IPv4Network("10.1.0.0/20")!, nat: nat)
            for c in 0..<containers {
                m.containers["c\(c)"] = Container(name: "c\(c)", image: "i\(c % max(1, images))", hostname: c % 2 == 0 ? word.lowercased() : nil,
                                                  network: c % 3 == 0 ? nil : .init(attach: "n"),
                                                  command: ["/bin/echo", word], env: [("W", word)], restart: c % 2 == 0 ? .always : .no)
            }
            let d = desired(m)
            #expect(!Planner.plan(desired: d, observed: matching(d)).hasChanges)
            let fresh = Planner.plan(desired: d, observed: ObservedState())
            #expect(fresh.summary.add == d.count)
            // Creates never precede what they depend on.
            let order = fresh.changes.map(\.address)
            for r in d { for dep in r.dependencies { #expect(order.firstIndex(of: dep)! < order.firstIndex(of: r.address)!) } }
        }
    }
}

@Suite struct RenderGolden {
    @Test func mixedPlanText() {
        let d = desired(sampleManifest(containers: 2))
        var o = matching(desired(sampleManifest(containers: 2)))
        o.resources[ResourceAddress(.container, "c0")]!.attributes[ContainerAttribute.hostname] = .string("box")
        o.resources[ResourceAddress(.container, "c1")]!.attributes[ContainerAttribute.image] = .string("alpine")
        o.resources[ResourceAddress(.container, "old")] = ObservedResource(ResourceAddress(.container, "old"), attributes: [ContainerAttribute.image: .string("box")])
        o.resources.removeValue(forKey: ResourceAddress(.network, "br0"))
        let text = PlanText.render(Planner.plan(desired: d, observed: o))
        #expect(text == """
            tupp will perform the following actions:

              # container.old will be destroyed (not in manifest)
              - container "old" {
                  - image = "box"
                }

              # network.br0 will be created
              + network "br0" {
                  + bridge  = "tupp0"
                  + gateway = "10.9.0.1"
                  + nat     = false
                  + subnet  = "10.9.0.0/24"
                }

              # container.c0 will be updated in place
              ~ container "c0" {
                  ~ hostname = "box" -> "c0"
                  # network.br0 is created: plugged again
                }

              # container.c1 must be replaced
            -/+ container "c1" {
                  ~ image = "alpine" -> "box" # forces replacement
                  # network.br0 is created: plugged again
                  ! the writable snapshot containers/c1 is discarded: changes made inside the container are lost
                }

            Plan: 1 to add, 1 to change, 1 to replace, 1 to destroy.

            """)
    }
}
