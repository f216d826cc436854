import Glibc
import Testing
import TuppBase
import TuppSystem
import TuppTestSupport

/// OCI layouts with a static busybox, for images a container can run:
/// - `base`: busybox and its applets, /etc/base;
/// - `v1`: base + a layer with /srv/version "1" and 200 KB of data; its config runs
///   `/bin/sh -c 'exec sleep 1001'` in /srv as 1000:1000 with GREETING=hello, stopped with SIGINT;
/// - `v2`: base + another layer (/srv/version "2"), the same config with GREETING=hi;
/// - `other`: base + a layer of its own (shares the base layer with v1).
private let runnableImagesScript = #"""
set -e
cd "$1"
umoci init --layout L
umoci new --image L:base
umoci unpack --image L:base B >/dev/null
mkdir -p B/rootfs/bin B/rootfs/srv B/rootfs/etc
cp /bin/busybox B/rootfs/bin/busybox
for a in sh sleep cat env; do ln -s busybox B/rootfs/bin/$a; done
echo base > B/rootfs/etc/base
umoci repack --image L:base B >/dev/null
for v in 1 2; do
  umoci unpack --image L:base V$v >/dev/null
  echo $v > V$v/rootfs/srv/version
  head -c $((v * 200000)) /dev/urandom > V$v/rootfs/srv/data
  umoci repack --image L:v$v V$v >/dev/null
done
umoci config --image L:v1 --config.entrypoint /bin/sh --config.cmd -c --config.cmd 'exec sleep 1001' \
  --config.env PATH=/bin --config.env GREETING=hello --config.workingdir /srv --config.user 1000:1000 --config.stopsignal SIGINT
umoci config --image L:v2 --config.entrypoint /bin/sh --config.cmd -c --config.cmd 'exec sleep 1001' \
  --config.env PATH=/bin --config.env GREETING=hi --config.workingdir /srv --config.user 1000:1000 --config.stopsignal SIGINT
umoci unpack --image L:base O >/dev/null
echo other > O/rootfs/etc/other
umoci repack --image L:other O >/dev/null
"""#

/// An installation with a registry of its own on 127.0.0.1, its images pushed from the
/// layouts above. The registry and the layouts live in a directory of their own, so the
/// installation's leftover checks see only what tupp made; `finish` stops the registry by
/// pid and removes both.
private final class RegistrySite {
    let i: Installation
    let directory: TemporaryDirectory
    let registry: TestRegistry
    let layout: String

    init(auth: TestRegistry.Auth = .none, _ label: String = #function) throws {
        i = try Installation(label)
        directory = try TemporaryDirectory("tupp-registry")
        do {
            registry = try TestRegistry(directory: "\(directory.path)/registry", auth: auth)
        } catch {
            directory.remove()
            i.cleanup()
            throw error
        }
        let work = "\(directory.path)/work"
        do {
            try Files.createDirectory(work)
            try Spawn.checked(["sh", "-c", runnableImagesScript, "sh", work])
        } catch {
            registry.stop()
            directory.remove()
            i.cleanup()
            throw error
        }
        layout = "\(work)/L"
    }

    func push(_ tag: String, as name: String) throws { try registry.push("\(layout):\(tag)", as: name) }

    /// The manifest: a pool, `images` (name → registry reference below the registry's
    /// host, or a full `registry:` line's value), `containers` as YAML lines.
    func manifest(_ images: [String: String], containers: String = "", name: String = "m.yaml", extra: String = "") throws -> String {
        let lines = images.keys.sorted().map { key in
            let value = images[key]!
            return value.contains("registry:") ? "  \(key): { \(value) }" : "  \(key): { registry: \"\(registry.host)/\(value)\", insecure: true\(extra) }"
        }
        return try i.manifest(name, """
            version: 1
            storage:
              root: {{ROOT}}/pool
              device: { file: {{ROOT}}/pool.img, size: 512MiB }
            images:
            \(lines.joined(separator: "\n"))
            \(containers.isEmpty ? "" : "containers:\n" + containers)
            """)
    }

    /// Requests the registry completed so far.
    func requestCount() throws -> Int { try registry.requests().count }

    func finish(sourceLocation: SourceLocation = #_sourceLocation) {
        registry.stop()
        directory.remove()
        i.cleanupLeavingNothing(sourceLocation: sourceLocation)
    }
}

/// A container without its own network: its image's defaults run as its command.
private func quiet(_ name: String, image: String, extra: String = "") -> String {
    "  \(name):\n    image: \(image)\n    namespaces: [mount, uts, ipc, pid]\n    stopTimeout: 1s\n" + (extra.isEmpty ? "" : extra + "\n")
}

private func registryReady() throws -> Bool {
    guard try ready() else { return false }
    return try Host.require(.command("/usr/bin/docker-registry"), .command("/usr/bin/skopeo"), .command("/usr/bin/umoci"),
                            .command("/usr/bin/htpasswd"))
}

/// The subvolumes directly in a directory of the pool (images/, layers/), by name, as
/// `btrfs subvolume list` shows them.
private func subvolumes(_ directory: String) throws -> [String] {
    let out = try Spawn.checked(["btrfs", "subvolume", "list", "-o", directory]).stdout
    let parent = Paths.basename(directory)
    return out.split(separator: "\n").compactMap { line -> String? in
        guard let path = line.split(separator: " ").last else { return nil }
        let parts = path.split(separator: "/")
        guard parts.count >= 2, parts[parts.count - 2] == Substring(parent) else { return nil }
        return String(parts[parts.count - 1])
    }.sorted()
}

/// A subvolume's field as `btrfs subvolume show` prints it.
private func show(_ path: String, _ field: String) throws -> String? {
    let out = try Spawn.checked(["btrfs", "subvolume", "show", path]).stdout
    for line in out.split(separator: "\n") {
        let trimmed: String = String(line).trimmingCharacters()
        if trimmed.hasPrefix(field + ":") { return String(trimmed.dropFirst(field.count + 1)).trimmingCharacters() }
    }
    return nil
}

/// The layer digests of `name`'s manifest (skopeo's view).
private func layerDigests(_ registry: TestRegistry, _ name: String) throws -> [String] {
    let raw = try Spawn.checked(skopeo(["inspect", "--raw", "--tls-verify=false", "docker://\(registry.host)/\(name)"])).stdout
    guard case .array(let layers)? = try JSON.parse(Array(raw.utf8))["layers"] else { return [] }
    return layers.compactMap { $0["digest"]?.string }
}

/// The registry's manifest digest of `name` (skopeo's view).
private func digest(_ registry: TestRegistry, _ name: String) throws -> String {
    let out = try Spawn.checked(skopeo(["inspect", "--tls-verify=false", "--format", "{{.Digest}}", "docker://\(registry.host)/\(name)"])).stdout
    return out.trimmingCharacters()
}

@Suite(.serialized) struct RegistryEngineTests {
    /// A tag and a pinned digest pulled through `tupp apply`: both images are read-only
    /// snapshots of their top layer, the shared base layer is fetched once, and a second
    /// apply has nothing to do.
    @Test func pullByTagAndByDigest() throws {
        guard try registryReady() else { return }
        let site = try RegistrySite()
        defer { site.finish() }
        try site.push("v1", as: "e2e/app:1")
        try site.push("other", as: "e2e/other:1")
        let pinned = try digest(site.registry, "e2e/other:1")
        let m = try site.manifest(["app": "e2e/app:1", "other": "e2e/other@\(pinned)"])

        let plan = try site.i.tupp("plan", m)
        #expect(plan.status == 0, "\(plan)")
        let tag = try digest(site.registry, "e2e/app:1")
        #expect(plan.stdout.contains("! \(site.registry.host)/e2e/app:1 → \(tag)"), "\(plan.stdout)")
        #expect(plan.stdout.contains("+ digest = \"\(pinned)\""), "\(plan.stdout)")
        let apply = try site.i.tupp("apply", m)
        #expect(apply.status == 0, "\(apply)")
        #expect(apply.stdout.contains("layer 1/2"), "one line per layer: \(apply.stdout)")

        let pool = "\(site.i.root.path)/pool"
        #expect(try Files.readText("\(pool)/images/app/srv/version") == "1\n")
        #expect(try Files.readText("\(pool)/images/other/etc/other") == "other\n")
        #expect(try show("\(pool)/images/app", "Flags") == "readonly")
        let layers = try subvolumes("\(pool)/layers")
        #expect(layers.count == 3, "base, v1's and other's layers: \(layers)")
        for image in ["app", "other"] {
            let parent = try show("\(pool)/images/\(image)", "Parent UUID")
            let tops = try layers.map { try show("\(pool)/layers/\($0)", "UUID") }
            #expect(tops.contains(parent), "images/\(image) is a snapshot of a layer")
        }
        // Each layer blob was fetched once, the base layer the two images share included.
        let blobs = try site.registry.blobGETs("e2e/app") + site.registry.blobGETs("e2e/other")
        let layerBlobs = try layerDigests(site.registry, "e2e/app:1") + layerDigests(site.registry, "e2e/other:1")
        #expect(Set(layerBlobs).count == 3, "\(layerBlobs)")
        for layer in Set(layerBlobs) {
            #expect(blobs.filter { $0 == layer }.count == 1, "\(layer) fetched once: \(blobs)")
        }

        let again = try site.i.tupp("apply", m)
        #expect(again.stdout.contains("No changes."), "\(again)")

        // An unknown tag is a plan error naming the reference: exit 1, nothing applied (not
        // even the removal of the images this manifest leaves out).
        let unknown = try site.manifest(["nope": "e2e/app:nope"], name: "unknown.yaml")
        let refused = try site.i.tupp("apply", unknown)
        #expect(refused.status == 1, "\(refused)")
        #expect(refused.output.contains("\(site.registry.host)/e2e/app:nope") && refused.output.contains("not found (404)"), "\(refused)")
        #expect(try Files.readText("\(pool)/images/app/srv/version") == "1\n")
    }

    /// A tag that now points elsewhere: the plan shows the new digest, replaces the image
    /// and every container using it; apply runs the new content and deletes the layer
    /// only the old version used (listed in the plan with the bytes it frees).
    @Test func aTagThatMovedReplacesTheImageAndItsContainers() throws {
        guard try registryReady() else { return }
        let site = try RegistrySite()
        defer { site.finish() }
        try site.push("v1", as: "e2e/app:1")
        let m = try site.manifest(["app": "e2e/app:1"], containers: quiet("web", image: "app"))
        try site.i.apply(m)
        let pool = "\(site.i.root.path)/pool"
        let oldLayers = try subvolumes("\(pool)/layers")
        #expect(oldLayers.count == 2)

        try site.push("v2", as: "e2e/app:1")
        let moved = try digest(site.registry, "e2e/app:1")
        let plan = try site.i.tupp("plan", "--detailed-exitcode", m)
        #expect(plan.status == 2, "\(plan)")
        #expect(plan.stdout.contains("-/+ image \"app\""), "\(plan.stdout)")
        #expect(plan.stdout.contains("-> \"\(moved)\" # forces replacement"), "\(plan.stdout)")
        #expect(plan.stdout.contains("! \(site.registry.host)/e2e/app:1 → \(moved)"), "\(plan.stdout)")
        #expect(plan.stdout.contains("-/+ container \"web\""), "\(plan.stdout)")
        #expect(plan.stdout.contains("# image.app is replaced # forces replacement"), "\(plan.stdout)")
        #expect(plan.stdout.contains("~ env.GREETING = \"hello\" -> \"hi\""), "the new config's values: \(plan.stdout)")
        // The old version's own layer: listed with its size, deleted after the pull.
        #expect(plan.stdout.contains("will be destroyed"), "\(plan.stdout)")
        #expect(plan.stdout.contains("no image uses it once image.app is replaced by one not built on it; frees"), "\(plan.stdout)")
        let json = try site.i.tupp("plan", "--json", m).stdout
        #expect(json.contains(#""address":"image.app","type":"image","name":"app","actions":["delete","create"]"#), "\(json)")

        let apply = try site.i.tupp("apply", m)
        #expect(apply.status == 0, "\(apply)")
        #expect(try Files.readText("\(pool)/images/app/srv/version") == "2\n")
        #expect(try Files.readText("\(pool)/containers/web/srv/version") == "2\n")
        let newLayers = try subvolumes("\(pool)/layers")
        #expect(newLayers.count == 2 && Set(newLayers).intersection(oldLayers).count == 1, "base kept, v1's layer gone: \(oldLayers) → \(newLayers)")
        #expect(try site.i.tupp("plan", "--detailed-exitcode", m).status == 0)
    }

    /// Pinned by digest and pulled: `plan` sends the registry nothing at all.
    @Test func aPinnedDigestMakesNoRequestDuringPlan() throws {
        guard try registryReady() else { return }
        let site = try RegistrySite()
        defer { site.finish() }
        try site.push("v1", as: "e2e/app:1")
        let pinned = try digest(site.registry, "e2e/app:1")
        let m = try site.manifest(["app": "e2e/app@\(pinned)"], containers: quiet("web", image: "app"))
        try site.i.apply(m)
        let before = try site.requestCount()
        let plan = try site.i.tupp("plan", "--detailed-exitcode", m)
        #expect(plan.status == 0 && plan.stdout.contains("No changes."), "\(plan)")
        let apply = try site.i.tupp("apply", m)
        #expect(apply.stdout.contains("No changes."), "\(apply)")
        let asked = try site.registry.requests().dropFirst(before).map { "\($0.method) \($0.uri)" }
        #expect(asked.isEmpty, "requests during plan and apply: \(asked)")
    }

    /// A tag costs one HEAD per plan; `--refresh=false` costs nothing and keeps the image
    /// as pulled even when the tag moved.
    @Test func refreshFalseMakesNoRequest() throws {
        guard try registryReady() else { return }
        let site = try RegistrySite()
        defer { site.finish() }
        try site.push("v1", as: "e2e/app:1")
        let m = try site.manifest(["app": "e2e/app:1"])
        try site.i.apply(m)
        var before = try site.requestCount()
        #expect(try site.i.tupp("plan", m).stdout.contains("No changes."))
        let asked = try site.registry.requests().dropFirst(before)
        #expect(asked.filter { $0.method == "HEAD" }.count == 1 && asked.allSatisfy { $0.method == "HEAD" || $0.uri == "/v2/" },
                "one HEAD (after the /v2/ probe): \(asked.map { "\($0.method) \($0.uri)" })")

        try site.push("v2", as: "e2e/app:1")
        before = try site.requestCount()
        let quiet = try site.i.tupp("plan", "--refresh=false", "--detailed-exitcode", m)
        #expect(quiet.status == 0 && quiet.stdout.contains("No changes."), "\(quiet)")
        let applied = try site.i.tupp("apply", "--refresh=false", m)
        #expect(applied.status == 0 && applied.stdout.contains("No changes."), "\(applied)")
        #expect(try site.requestCount() == before)
        #expect(try site.i.tupp("plan", "--detailed-exitcode", m).status == 2, "asked again, the moved tag shows")
    }

    /// A registry that does not answer: plan and apply warn and keep the image as pulled
    /// (exit 0, no changes); an image not pulled yet is planned but cannot be pulled (exit 1).
    @Test func anUnreachableRegistryIsAWarning() throws {
        guard try registryReady() else { return }
        let site = try RegistrySite()
        defer { site.finish() }
        try site.push("v1", as: "e2e/app:1")
        let m = try site.manifest(["app": "e2e/app:1"], containers: quiet("web", image: "app"))
        try site.i.apply(m)
        site.registry.kill()

        let plan = try site.i.tupp("plan", "--detailed-exitcode", m)
        #expect(plan.status == 0, "\(plan)")
        #expect(plan.stdout.contains("No changes."), "\(plan.stdout)")
        #expect(plan.stdout.contains("Warning: image.app: registry \(site.registry.host) did not answer"), "\(plan.stdout)")
        #expect(plan.stdout.contains("is taken as unchanged"), "\(plan.stdout)")
        let json = try site.i.tupp("plan", "--json", m).stdout
        #expect(json.contains(#""warnings":["image.app: registry"#), "\(json)")
        let apply = try site.i.tupp("apply", m)
        #expect(apply.status == 0 && apply.stdout.contains("did not answer"), "\(apply)")

        let more = try site.manifest(["app": "e2e/app:1", "new": "e2e/other:1"], containers: quiet("web", image: "app"))
        let planNew = try site.i.tupp("plan", "--detailed-exitcode", more)
        #expect(planNew.status == 2 && planNew.stdout.contains("cannot be pulled until it does"), "\(planNew)")
        let applyNew = try site.i.tupp("apply", more)
        #expect(applyNew.status == 1, "\(applyNew)")
        #expect(applyNew.stderr.contains("image.new") && applyNew.stderr.contains("Connection refused"), "\(applyNew)")
        #expect(try subvolumes("\(site.i.root.path)/pool/images") == ["app"], "nothing half-imported")
        try site.registry.start()
    }

    /// A container without `command` runs the image's Entrypoint + Cmd with its Env in its
    /// WorkingDir as its User (seen in /proc from outside); `command:` replaces Cmd
    /// (`-c …` here), the image's Entrypoint (/bin/sh) stays; `user:` replaces User.
    @Test func theImagesDefaultsRunWhenTheContainerSaysNothing() throws {
        guard try registryReady() else { return }
        let site = try RegistrySite()
        defer { site.finish() }
        try site.push("v1", as: "e2e/app:1")
        let m = try site.manifest(["app": "e2e/app:1"], containers: quiet("web", image: "app", extra: "    env: { EXTRA: \"1\" }"))
        let plan = try site.i.tupp("plan", m).stdout
        #expect(plan.contains(#"+ command      = ["/bin/sh", "-c", "exec sleep 1001"]"#), "the effective values: \(plan)")
        #expect(plan.contains(#"+ workdir      = "/srv""#) && plan.contains(#"+ env.GREETING = "hello""#), "\(plan)")
        #expect(plan.contains(#"+ user         = "1000:1000""#) && plan.contains(#"+ stop_signal  = "SIGINT""#), "\(plan)")
        try site.i.apply(m)
        let pool = "\(site.i.root.path)/pool"

        func witness() throws -> (argv: [String], env: [String], inSrv: Bool, uid: String?) {
            let pid = try #require(try site.i.pid("web"))
            let argv = try #require(try Files.read("/proc/\(pid)/cmdline")).split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
            let env = try #require(try Files.read("/proc/\(pid)/environ")).split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
            var cwd = stat(), srv = stat()
            let inSrv = stat("/proc/\(pid)/cwd", &cwd) == 0 && stat("\(pool)/containers/web/srv", &srv) == 0
                && cwd.st_dev == srv.st_dev && cwd.st_ino == srv.st_ino
            let status = try #require(try Files.readText("/proc/\(pid)/status"))
            let uid = status.split(separator: "\n").first { $0.hasPrefix("Uid:") }?.split(separator: "\t").dropFirst().first.map(String.init)
            return (argv, env, inSrv, uid)
        }
        let first = try witness()
        #expect(first.argv == ["sleep", "1001"], "the image's sh -c 'exec sleep 1001': \(first.argv)")
        #expect(first.env.contains("GREETING=hello") && first.env.contains("PATH=/bin") && first.env.contains("EXTRA=1"), "\(first.env)")
        #expect(first.inSrv, "working directory is the image's /srv")
        #expect(first.uid == "1000", "the image's User")

        let replaced = try site.manifest(["app": "e2e/app:1"],
                                         containers: quiet("web", image: "app", extra: "    command: [\"-c\", \"exec sleep 1002\"]\n    user: \"2000\""))
        let restart = try site.i.tupp("plan", replaced).stdout
        #expect(restart.contains(#"["/bin/sh", "-c", "exec sleep 1001"] -> ["/bin/sh", "-c", "exec sleep 1002"] # restarts the process"#), "\(restart)")
        try site.i.apply(replaced)
        let second = try witness()
        #expect(second.argv == ["sleep", "1002"], "the image's Entrypoint with the manifest's command: \(second.argv)")
        #expect(second.env.contains("GREETING=hello") && !second.env.contains("EXTRA=1") && second.inSrv)
        #expect(second.uid == "2000", "the manifest's user")
    }

    /// With Basic auth: the password from the auth file reaches the registry, and appears
    /// in no output, record, saved plan, JSON or file of the pool.
    @Test func credentialsNeverAppear() throws {
        guard try registryReady() else { return }
        let site = try RegistrySite(auth: .basic)
        defer { site.finish() }
        try site.push("v1", as: "private/app:1")
        let auth = "\(site.i.root.path)/auth.json"
        let encoded = try Spawn.checked(["sh", "-c", #"printf %s "$1" | base64 -w0"#, "sh", "\(TestRegistry.user):\(TestRegistry.password)"])
            .stdout.trimmingCharacters()
        try Files.writeAtomically(auth, text: #"{"auths": {"\#(site.registry.host)": {"auth": "\#(encoded)"}}}"#, mode: 0o600)
        let m = try site.manifest(["app": "private/app:1"], containers: quiet("web", image: "app"))
        let environment = ["REGISTRY_AUTH_FILE=\(auth)"]

        // Refused without credentials, and with a wrong password (which holds the right one).
        let wrongAuth = "\(site.i.root.path)/wrong.json"
        let wrong = try Spawn.checked(["sh", "-c", #"printf %s "$1" | base64 -w0"#, "sh", "\(TestRegistry.user):wrong-\(TestRegistry.password)"])
            .stdout.trimmingCharacters()
        try Files.writeAtomically(wrongAuth, text: #"{"auths": {"\#(site.registry.host)": {"auth": "\#(wrong)"}}}"#, mode: 0o600)
        let denied = try site.i.tupp(["plan", m])
        #expect(denied.status == 1 && denied.output.contains("asks for a user name"), "\(denied)")
        let refused = try site.i.tupp(["apply", m], environment: ["REGISTRY_AUTH_FILE=\(wrongAuth)"])
        #expect(refused.status == 1 && refused.output.contains("access denied") && refused.output.contains(wrongAuth), "\(refused)")
        var outputs = [denied.output, refused.output]
        for arguments in [["plan", m], ["plan", "--json", m], ["plan", "--out", "\(site.i.root.path)/saved.plan", m],
                          ["apply", "\(site.i.root.path)/saved.plan"], ["apply", "--json", m], ["status", "--json"], ["plan", "--destroy", m]] {
            let run = try site.i.tupp(arguments, environment: environment)
            #expect(run.status == 0, "\(arguments): \(run)")
            outputs.append(run.output)
        }
        #expect(try Files.readText("\(site.i.root.path)/pool/images/app/srv/version") == "1\n")
        for secret in [TestRegistry.password, encoded] {
            #expect(!outputs.joined().contains(secret))
            for directory in [site.i.state, "\(site.i.root.path)/pool", "\(site.i.root.path)/saved.plan"] {
                #expect(try filesContaining(secret, below: directory).isEmpty, "\(directory)")
            }
        }
    }

    /// Layers no image uses are listed in the plan with the bytes they free and deleted
    /// by apply; a layer still used by another image stays.
    @Test func unusedLayersAreListedAndDeleted() throws {
        guard try registryReady() else { return }
        let site = try RegistrySite()
        defer { site.finish() }
        try site.push("v1", as: "e2e/app:1")
        try site.push("other", as: "e2e/other:1")
        let both = try site.manifest(["app": "e2e/app:1", "other": "e2e/other:1"])
        try site.i.apply(both)
        let pool = "\(site.i.root.path)/pool"
        #expect(try subvolumes("\(pool)/layers").count == 3)

        let one = try site.manifest(["other": "e2e/other:1"])
        let plan = try site.i.tupp("plan", one).stdout
        #expect(plan.contains("- image \"app\""), "\(plan)")
        #expect(plan.split(separator: "will be destroyed", omittingEmptySubsequences: false).count == 3, "the image and its own layer only: \(plan)")
        #expect(plan.contains("no image uses it once image.app is destroyed; frees"), "\(plan)")
        #expect(plan.contains("Plan: 0 to add, 0 to change, 0 to replace, 2 to destroy."), "\(plan)")
        try site.i.apply(one)
        let left = try subvolumes("\(pool)/layers")
        #expect(left.count == 2, "base and other's layer: \(left)")
        let parent = try show("\(pool)/images/other", "Parent UUID")
        #expect(try left.map { try show("\(pool)/layers/\($0)", "UUID") }.contains(parent))
        #expect(try site.i.tupp("plan", "--detailed-exitcode", one).status == 0)
    }

    /// Killed at every checkpoint of an apply that pulls a two-layer image and starts a
    /// container on it: images/app is never there half-imported, the plan reads, the
    /// next apply converges and leaves no temporary subvolume behind.
    @Test func aPullKilledAtEveryCheckpointConverges() throws {
        guard try registryReady() else { return }
        let site = try RegistrySite()
        defer { site.finish() }
        try site.push("v1", as: "e2e/app:1")
        let m = try site.manifest(["app": "e2e/app:1"], containers: quiet("web", image: "app"))
        let traced = try site.i.tupp(["apply", m], environment: ["TUPP_TEST_CHECKPOINTS=1"])
        #expect(traced.status == 0, "\(traced)")
        let points = traced.stderr.split(separator: "\n").filter { $0.hasPrefix("tupp checkpoint ") }.map(String.init)
        #expect(points.filter { $0.hasSuffix(" being unpacked") }.count == 2 && points.contains { $0.contains("images/app made from its top layer") },
                "\(points)")
        try site.i.expectClean(m)
        let pool = "\(site.i.root.path)/pool"

        for (n, point) in points.enumerated() {
            let crashed = try site.i.tupp(["apply", m], environment: ["TUPP_TEST_CRASH_AT=\(n + 1)"])
            #expect(crashed.status == 128 + SIGKILL, "killed at \(point): \(crashed)")
            if Files.exists("\(pool)/images/app") {
                #expect(try Files.readText("\(pool)/images/app/srv/version") == "1\n", "a whole image or none after \(point)")
            }
            let plan = try site.i.tupp("plan", "--detailed-exitcode", m)
            #expect(plan.status == 0 || plan.status == 2, "after a crash at \(point) the plan is readable: \(plan)")
            let converge = try site.i.tupp("apply", m)
            #expect(converge.status == 0, "apply converges after a crash at \(point): \(converge)")
            let again = try site.i.tupp("apply", m)
            #expect(again.stdout.contains("No changes."), "after a crash at \(point): \(again)")
            let temporaries = try subvolumes("\(pool)/images") + subvolumes("\(pool)/layers")
            #expect(!temporaries.contains { $0.hasPrefix(".import-") }, "after a crash at \(point): \(temporaries)")
            #expect(try subvolumes("\(pool)/layers").count == 2)
            #expect(try site.i.pid("web") != nil, "running after a crash at \(point)")
            try site.i.expectClean(m)
        }
    }
}
