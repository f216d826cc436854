import Testing
import TuppBase
import TuppFacts
import TuppManifest
@testable import TuppPlan
import TuppRender

// Registry images in the plan, with plain values: what a tag resolves to, what a registry
// that does not answer means, the image config's defaults for containers (Docker's
// rules) and which layers a plan deletes.

private let digestA = "sha256:" + String(repeating: "a", count: 64)
private let digestB = "sha256:" + String(repeating: "b", count: 64)

private func registryManifest(_ reference: String = "127.0.0.1:5000/app:1", containers: [Container]? = nil) -> Manifest {
    var m = Manifest()
    m.storage = Storage(root: "/pool")
    m.images["app"] = Image(name: "app", source: .registry(RegistryImage(reference: reference, insecure: true)))
    for c in containers ?? [Container(name: "web", image: "app", command: nil)] { m.containers[c.name] = c }
    return m
}

private let appConfig = ImageConfig(entrypoint: ["/docker-entrypoint.sh"], cmd: ["nginx", "-g", "daemon off;"],
                                    env: ["PATH=/usr/local/bin:/usr/bin:/bin", "NGINX_VERSION=1.27", "BROKEN"], workingDir: "/srv",
                                    user: "101:101", stopSignal: "SIGQUIT")

@Suite struct ImageDefaultsTests {
    func run(command: [String]? = nil, entrypoint: [String]? = nil, env: [(key: String, value: String)] = [], workdir: String? = nil,
             config: ImageConfig? = appConfig) -> RunSettings {
        RunSettings(Container(name: "web", image: "app", command: command, entrypoint: entrypoint, env: env, workdir: workdir),
                    config: config)
    }

    @Test func aContainerThatSaysNothingRunsTheImagesEntrypointAndCmd() {
        let r = run()
        #expect(r.command == ["/docker-entrypoint.sh", "nginx", "-g", "daemon off;"])
        #expect(r.env == ["PATH": "/usr/local/bin:/usr/bin:/bin", "NGINX_VERSION": "1.27"])
        #expect(r.workdir == "/srv")
        #expect(r.user == "101:101" && r.stopSignal == "SIGQUIT")
    }

    @Test func commandReplacesCmdOnly() {
        #expect(run(command: ["nginx", "-t"]).command == ["/docker-entrypoint.sh", "nginx", "-t"])
    }

    @Test func entrypointReplacesEntrypointAndDropsCmd() {
        #expect(run(entrypoint: ["/bin/sh"]).command == ["/bin/sh"])
        #expect(run(command: ["-c", "env"], entrypoint: ["/bin/sh"]).command == ["/bin/sh", "-c", "env"])
    }

    @Test func theManifestsEnvAndWorkdirWin() {
        let r = run(env: [("NGINX_VERSION", "mine"), ("EXTRA", "1")], workdir: "/")
        #expect(r.env == ["PATH": "/usr/local/bin:/usr/bin:/bin", "NGINX_VERSION": "mine", "EXTRA": "1"])
        #expect(r.workdir == "/")
    }

    @Test func envFilesComeBetweenTheImageAndTheManifest() {
        var c = Container(name: "web", image: "app", command: nil, env: [("A", "manifest")])
        c.lifecycle.fileEnvironment = ["A": "file", "B": "file", "NGINX_VERSION": "file"]
        let r = RunSettings(c, config: appConfig)
        #expect(r.env["A"] == "manifest" && r.env["B"] == "file" && r.env["NGINX_VERSION"] == "file" && r.env["PATH"] != nil)
    }

    @Test func theImagesHealthcheckAndStopSignalApplyUnlessTheManifestSaysOtherwise() {
        var config = appConfig
        config.healthcheck = ImageConfig.Healthcheck(test: ["CMD-SHELL", "curl -f localhost"], intervalNanoseconds: 5_000_000_000, retries: 0)
        let c = Container(name: "web", image: "app", command: nil)
        let spec = ContainerSpec(c, network: nil, address: nil, image: .config(config))
        #expect(spec.healthcheck == Healthcheck(command: ["/bin/sh", "-c", "curl -f localhost"], interval: 5))
        #expect(spec.stopSignal == Signal("SIGQUIT"))
        config.healthcheck = ImageConfig.Healthcheck(test: ["CMD", "/bin/check", "--fast"])
        #expect(ContainerSpec(c, network: nil, address: nil, image: .config(config)).healthcheck?.command == ["/bin/check", "--fast"])
        config.healthcheck = ImageConfig.Healthcheck(test: ["NONE"])
        #expect(ContainerSpec(c, network: nil, address: nil, image: .config(config)).healthcheck == nil)
        var declared = c
        declared.lifecycle.stopSignal = Signal("SIGINT")
        declared.lifecycle.healthcheck = Healthcheck(command: ["true"])
        let own = ContainerSpec(declared, network: nil, address: nil, image: .config(config))
        #expect(own.stopSignal == Signal("SIGINT") && own.healthcheck?.command == ["true"])
        #expect(ContainerSpec(c, network: nil, address: nil, image: .none).stopSignal == .term)
    }

    @Test func withoutAConfigTheManifestSaysEverything() {
        let r = run(command: ["/bin/sh"], config: nil)
        #expect(r.command == ["/bin/sh"] && r.env.isEmpty && r.workdir == "/" && r.user == nil)
        #expect(run(config: ImageConfig()).command.isEmpty)
    }

    @Test func thePlanShowsTheEffectiveValues() {
        let m = registryManifest()
        let d = DesiredState.resources(m, DesiredContext(imageDigests: ["app": digestA], imageDefaults: ["app": .config(appConfig)]))
        let web = d.first { $0.address == ResourceAddress(.container, "web") }!
        #expect(web.attributes[ContainerAttribute.command] == .strings(["/docker-entrypoint.sh", "nginx", "-g", "daemon off;"]))
        #expect(web.attributes[ContainerAttribute.workdir] == .string("/srv"))
        #expect(web.attributes[ContainerAttribute.env.child("NGINX_VERSION")] == .string("1.27"))
        let spec = web.spec(ContainerSpec.self)!
        #expect(spec.problem == nil && spec.awaitingImageConfig == nil && spec.stopSignal == Signal("SIGQUIT"))
        #expect(spec.confinement.user == UserSpec("101:101") && web.attributes[ContainerAttribute.user] == .string("101:101"))
    }

    @Test func anImageConfigWithNothingToRunIsAPlanError() {
        let m = registryManifest()
        let d = DesiredState.resources(m, DesiredContext(imageDigests: ["app": digestA], imageDefaults: ["app": .config(ImageConfig(env: ["A=1"]))]))
        let problem = d.compactMap { $0.spec(ContainerSpec.self)?.problem }
        #expect(problem == ["container.web has nothing to run: neither the manifest nor the config of image.app gives an entrypoint or command; declare `command:`"])
    }

    @Test func aConfigNotKnownYetIsCompletedAtApply() {
        let m = registryManifest()
        // No defaults observed: the registry image's config is unknown.
        let d = DesiredState.resources(m, DesiredContext())
        let web = d.first { $0.address == ResourceAddress(.container, "web") }!
        let spec = web.spec(ContainerSpec.self)!
        #expect(spec.awaitingImageConfig != nil && spec.problem == nil)
        #expect(web.attributes[ContainerAttribute.command] == nil && web.attributes[ContainerAttribute.workdir] == nil)
        #expect(web.notes == ["its command, environment, working directory and user take the defaults of image.app's config, known once it is pulled"])
        let resolved = spec.resolved(with: appConfig)
        #expect(resolved.command == ["/docker-entrypoint.sh", "nginx", "-g", "daemon off;"] && resolved.workdir == "/srv")
        #expect(ContainerKind.attributes(resolved) == DesiredState.resources(m, DesiredContext(imageDefaults: ["app": .config(appConfig)]))
            .first { $0.address == web.address }!.attributes)
        #expect(spec.resolved(with: ImageConfig()).problem != nil)
    }
}

@Suite struct RegistryResolutionTests {
    let tagged = RegistryImage(reference: "127.0.0.1:5000/app:1")

    @Test func aDigestOrAnAnswerDecides() {
        #expect(ImageKind.registryDigest(tagged, name: "app", resolution: .resolved(digestB), pulled: digestA) == (digestB, nil))
        #expect(ImageKind.registryDigest(tagged, name: "app", resolution: .pinned(digestA), pulled: nil) == (digestA, nil))
    }

    @Test func notAskingKeepsWhatWasPulled() {
        #expect(ImageKind.registryDigest(tagged, name: "app", resolution: .notAsked, pulled: digestA) == (digestA, nil))
        #expect(ImageKind.registryDigest(tagged, name: "app", resolution: .notAsked, pulled: nil) == (nil, nil))
    }

    @Test func noAnswerIsAWarningAndTheTagIsTakenAsUnchanged() {
        let (digest, warning) = ImageKind.registryDigest(tagged, name: "app", resolution: .unreachable("connection refused"), pulled: digestA)
        #expect(digest == digestA)
        #expect(warning == "image.app: registry 127.0.0.1:5000 did not answer (connection refused); 127.0.0.1:5000/app:1 is taken as unchanged (\(digestA), as pulled)")
        let (none, notYet) = ImageKind.registryDigest(tagged, name: "app", resolution: .unreachable("timed out"), pulled: nil)
        #expect(none == nil && notYet?.hasSuffix("127.0.0.1:5000/app:1 cannot be pulled until it does") == true)
    }

    @Test func onlyAReadyRecordOfTheSameSourceCountsAsPulled() {
        let image = Image(name: "app", source: .registry(tagged))
        var record = Record(ResourceAddress(.image, "app"), status: .ready,
                            attributes: [ImageAttribute.source: .string(image.source.description), ImageAttribute.digest: .string(digestA)])
        #expect(ImageKind.pulledDigest(image, record: record) == digestA)
        record.status = .creating
        #expect(ImageKind.pulledDigest(image, record: record) == nil)
        let other = Image(name: "app", source: .registry(RegistryImage(reference: "127.0.0.1:5000/app:2")))
        record.status = .ready
        #expect(ImageKind.pulledDigest(other, record: record) == nil)
    }

    @Test func thePlanShowsWhatATagPointsTo() {
        let d = ImageKind.desired(Image(name: "app", source: .registry(tagged)), digest: digestB, pool: nil)
        #expect(d.notes == ["127.0.0.1:5000/app:1 → \(digestB)"])
        #expect(d.spec(ImageSpec.self)?.digest == digestB)
        let pinned = RegistryImage(reference: "127.0.0.1:5000/app@\(digestA)")
        #expect(ImageKind.desired(Image(name: "app", source: .registry(pinned)), digest: digestA, pool: nil).notes.isEmpty)
    }

    @Test func aTagThatMovedReplacesTheImageAndItsContainers() {
        let m = registryManifest(containers: [Container(name: "web", image: "app", command: nil)])
        let context = DesiredContext(imageDigests: ["app": digestB], imageDefaults: ["app": .config(appConfig)])
        let now = DesiredState.resources(m, context)
        var before = DesiredState.resources(m, DesiredContext(imageDigests: ["app": digestA], imageDefaults: ["app": .config(appConfig)]))
        before = before.map { $0 }
        var observed = matching(before)
        observed.warnings = ["a warning from observation"]
        let plan = Planner.plan(desired: now, observed: observed)
        let image = plan.changes.first { $0.address == ResourceAddress(.image, "app") }!
        #expect(image.action == .replace)
        #expect(image.reasons.first?.path == ImageAttribute.digest && image.reasons.first?.before == .string(digestA))
        #expect(image.notes == ["127.0.0.1:5000/app:1 → \(digestB)"])
        let web = plan.changes.first { $0.address == ResourceAddress(.container, "web") }!
        #expect(web.action == .replace && web.reasons.contains { $0.dependency == ResourceAddress(.image, "app") && $0.forcesReplacement })
        #expect(plan.warnings == ["a warning from observation"])
        let text = PlanText.render(plan)
        #expect(text.contains("-/+ image \"app\""))
        #expect(text.contains("! 127.0.0.1:5000/app:1 → \(digestB)"))
        #expect(text.contains("# image.app is replaced # forces replacement"))
    }
}

@Suite struct LayerKindTests {
    let base = "sha256:" + String(repeating: "1", count: 64)
    let mid = "sha256:" + String(repeating: "2", count: 64)
    let top = "sha256:" + String(repeating: "3", count: 64)
    let other = "sha256:" + String(repeating: "4", count: 64)

    func plan(_ changes: [(String, Plan.Action)], pool: Plan.Action = .noop) -> Plan {
        Plan(changes: [Plan.ResourceChange(address: ResourceAddress(.pool, "main"), action: pool, before: nil, after: nil)]
             + changes.map { Plan.ResourceChange(address: ResourceAddress(.image, $0.0), action: $0.1, before: nil, after: nil) }
             + [Plan.ResourceChange(address: ResourceAddress(.container, "web"), action: .create, before: nil, after: nil)])
    }

    var layers: LayerFacts {
        LayerFacts(layers: [LayerFact(chainID: base, images: ["a", "b"], size: 5 << 20), LayerFact(chainID: mid, images: ["a"], size: 1024),
                            LayerFact(chainID: top, images: ["a"]), LayerFact(chainID: other, images: [], size: 3 << 20)])
    }

    @Test func layersNoImageUsesAreDeleted() {
        let removals = LayerKind.removals(plan([("a", .noop), ("b", .noop)]), layers: layers, incoming: [:])
        #expect(removals.map(\.address.description) == ["layer.444444444444"])
        #expect(removals[0].action == .delete && removals[0].spec(LayerSpec.self)?.chainID == other)
        #expect(removals[0].before?[LayerAttribute.size] == .int(3 << 20))
        #expect(removals[0].notes == ["no image uses it; frees 3MiB"])
    }

    @Test func anImageDestroyedFreesTheLayersOnlyItUsed() {
        let removals = LayerKind.removals(plan([("a", .delete), ("b", .noop)]), layers: layers, incoming: [:])
        #expect(removals.map { $0.spec(LayerSpec.self)?.chainID } == [mid, top, other])
        #expect(removals[0].notes == ["no image uses it once image.a is destroyed; frees 1KiB"])
        #expect(removals[1].before?[LayerAttribute.usedBy] == .strings(["a"]) && removals[1].notes == ["no image uses it once image.a is destroyed"])
    }

    @Test func aReplacedImageKeepsTheLayersItsNewContentIsBuiltOn() {
        let removals = LayerKind.removals(plan([("a", .replace), ("b", .noop)]), layers: layers, incoming: ["a": [base, mid, "sha256:new"]])
        #expect(removals.map { $0.spec(LayerSpec.self)?.chainID } == [top, other])
        #expect(removals[0].notes == ["no image uses it once image.a is replaced by one not built on it"])
        // A new image built on an unused layer keeps it.
        let created = LayerKind.removals(plan([("a", .noop), ("b", .noop), ("c", .create)]), layers: layers, incoming: ["c": [other]])
        #expect(created.isEmpty)
    }

    @Test func whileANewImagesLayersAreUnknownNothingIsDeleted() {
        let facts = LayerFacts(layers: layers.layers, leftovers: [".import-3333-abcd"])
        let removals = LayerKind.removals(plan([("a", .replace)]), layers: facts, incoming: [:])
        #expect(removals.map(\.address.description) == ["layer..import-3333-abcd"])
        #expect(removals[0].spec(LayerSpec.self) == LayerSpec(leftover: ".import-3333-abcd"))
    }

    @Test func layersGoWithAPoolThatIsDeleted() {
        #expect(LayerKind.removals(plan([("a", .delete), ("b", .delete)], pool: .delete), layers: layers, incoming: [:]).isEmpty)
    }

    @Test func removalsRunAfterTheLastImageChange() {
        var p = plan([("a", .delete), ("b", .noop)])
        let removals = LayerKind.removals(p, layers: layers, incoming: [:])
        LayerKind.insert(removals, into: &p)
        #expect(p.changes.map(\.address.kind) == [.pool, .image, .image, .layer, .layer, .layer, .container])
        #expect(p.summary.destroy == 4)
        var noImages = Plan(changes: [Plan.ResourceChange(address: ResourceAddress(.container, "x"), action: .delete, before: nil, after: nil),
                                      Plan.ResourceChange(address: ResourceAddress(.network, "n"), action: .create, before: nil, after: nil)])
        LayerKind.insert(removals, into: &noImages)
        #expect(noImages.changes.map(\.address.kind) == [.container, .layer, .layer, .layer, .network])
    }

    @Test func addressesUseTwelveHexDigitsUnlessTwoShareThem() {
        let a = "sha256:abcdef012345" + String(repeating: "0", count: 52)
        let b = "sha256:abcdef0123456" + String(repeating: "1", count: 51)
        let names = LayerKind.addressNames([a, b, base])
        #expect(names[base] == "111111111111")
        #expect(names[a] == "abcdef0123450" && names[b] == "abcdef0123456")
    }

    @Test func deletionsShowTheBytesFreed() {
        var p = plan([("a", .delete), ("b", .noop)])
        LayerKind.insert(LayerKind.removals(p, layers: layers, incoming: [:]), into: &p)
        let text = PlanText.render(p)
        #expect(text.contains("# layer.222222222222 will be destroyed"))
        #expect(text.contains("- size     = 3145728 (3MiB)"))
        #expect(text.contains("! no image uses it; frees 3MiB"))
    }
}

@Suite struct RegistryRenamingTests {
    func plan(from: String, to: String, digests: (String, String) = (digestA, digestA), platforms: (String?, String?) = (nil, nil)) -> Plan {
        func manifest(_ reference: String, _ platform: String?) -> Manifest {
            var m = Manifest()
            m.images["app"] = Image(name: "app", source: .registry(RegistryImage(reference: reference, platform: platform)))
            m.containers["web"] = Container(name: "web", image: "app", command: ["/bin/true"])
            return m
        }
        let before = DesiredState.resources(manifest(from, platforms.0), DesiredContext(imageDigests: ["app": digests.0]))
        let now = DesiredState.resources(manifest(to, platforms.1), DesiredContext(imageDigests: ["app": digests.1]))
        return Planner.plan(desired: now, observed: matching(before))
    }

    func action(_ plan: Plan, _ address: String) -> Plan.Action? { plan.changes.first { $0.address.description == address }?.action }

    @Test func pinningATagToItsDigestChangesNothingButTheRecord() {
        let p = plan(from: "h/app:1", to: "h/app@\(digestA)")
        #expect(action(p, "image.app") == .update && action(p, "container.web") == .noop)
        #expect(p.changes.first { $0.address.description == "image.app" }?.reasons.first?.effect == .inPlace)
    }

    @Test func anotherDigestOrPlatformIsAnotherImage() {
        #expect(action(plan(from: "h/app:1", to: "h/app:2", digests: (digestA, digestB)), "image.app") == .replace)
        #expect(action(plan(from: "h/app:1", to: "h/app:1", platforms: (nil, "linux/arm64/v8")), "image.app") == .replace)
        #expect(action(plan(from: "h/app:1", to: "h/app:1", digests: (digestA, digestB)), "container.web") == .replace)
    }

    @Test func aNameWhoseDigestIsNotKnownIsReplaced() {
        // --refresh=false with a new tag: nothing says it is the same content.
        var m = Manifest()
        m.images["app"] = Image(name: "app", source: .registry(RegistryImage(reference: "h/app:2")))
        let now = DesiredState.resources(m, DesiredContext())
        var old = Manifest()
        old.images["app"] = Image(name: "app", source: .registry(RegistryImage(reference: "h/app:1")))
        let p = Planner.plan(desired: now, observed: matching(DesiredState.resources(old, DesiredContext(imageDigests: ["app": digestA]))))
        #expect(action(p, "image.app") == .replace)
    }

    @Test func registryNamesAreReadBack() {
        #expect(ImageKind.registryName("registry: h:5000/a:1 (linux/arm64/v8)")! == ("h:5000/a:1", "linux/arm64/v8"))
        #expect(ImageKind.registryName("registry: h/a@\(digestA)")! == ("h/a@\(digestA)", nil))
        #expect(ImageKind.registryName("oci: /layout:v1") == nil)
    }
}
