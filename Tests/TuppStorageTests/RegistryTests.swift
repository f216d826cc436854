import TuppBase
import TuppFacts
import TuppManifest
import Glibc
import Synchronization
import Testing
import TuppRegistry
import TuppStorage
import TuppSystem
import TuppTestSupport

/// Pulls from a real registry on 127.0.0.1 (see `TestRegistry`), compared with what
/// skopeo, umoci, btrfs-progs and the registry's own request log show.
@Suite("Registry pulls", .serialized)
struct RegistryTests {
    /// The pulled rootfs equals skopeo copy + umoci unpack of the same reference; the
    /// image config comes along; the zstd-compressed push of the same image unpacks
    /// (after the layers were deleted as unused) to the same tree.
    @Test func pullEqualsSkopeoAndUmoci() async throws {
        try await withRegistry { pool, registry in
            let work = pool.directory.path
            let layout = try buildRegistryImages(in: work)
            try registry.push("\(layout):app", as: "team/app:1.0")
            let store = pool.store
            let image = try await store.pullImage(name: "app", from: try registry.source("team/app:1.0"))
            let expected = try TreeSnapshot(try registry.referenceRootfs("team/app:1.0", into: work), withMtimes: true)
            let actual = try TreeSnapshot("\(pool.root)/images/app", withMtimes: true)
            #expect(actual.differences(from: expected) == [])
            // Not trivially equal: whiteouts, the opaque directory and hard links did their work.
            #expect(expected.nodes["opaque/d"] != nil && expected.nodes["opaque/b"] == nil && expected.nodes["opaque/keep"] == nil)
            #expect(expected.nodes["gone"] == nil && expected.nodes["del"] == nil)
            #expect(expected.nodes["etc/motd"]?.content == Array("third".utf8))
            #expect(expected.hardlinkSets.count == 2)

            // The identity is the manifest digest the registry serves (skopeo's witness).
            let raw = try command(skopeo(["inspect", "--raw", "--tls-verify=false", "docker://\(registry.host)/team/app:1.0"])).stdout
            let manifestFile = "\(work)/manifest.json"
            try Files.writeAtomically(manifestFile, text: raw)
            #expect(image.digest == "sha256:" + (try sha256sum(manifestFile)))
            #expect(try store.resolve(try registry.source("team/app:1.0")) == image.digest)

            let config = try #require(try store.metadata(of: "app")?.config)
            #expect(config.entrypoint == ["/bin/sh"] && config.cmd == ["-c", "echo hi"])
            #expect(config.env.contains("APP=1") && config.env.contains("PATH=/usr/bin:/bin"))
            #expect(config.workingDir == "/srv" && config.user == "1000:1000" && config.stopSignal == "SIGINT")
            #expect(image.config == config && image.layers.count == 3)

            // Read-only, a snapshot of its top layer (btrfs-progs' witness).
            let show = try command(["btrfs", "subvolume", "show", "\(pool.root)/images/app"]).output
            let top = try command(["btrfs", "subvolume", "show", "\(pool.root)/layers/\(Digest.encoded(image.layers[2]))"]).output
            #expect(show.contains("Flags:") && show.contains("readonly"))
            #expect(field("Parent UUID", show) == field("UUID", top))

            // zstd layers: a fresh unpack of each layer, the same tree.
            try store.deleteSubvolume("images/app")
            let deleted = try LayerStore(poolRoot: pool.root).deleteUnused()
            #expect(deleted.count == 3)
            #expect(try Files.list("\(pool.root)/layers").isEmpty)
            // Recompressed by hand: skopeo 1.9 pushes these layers as gzip whatever it is told.
            try command(["sh", "-c", zstdCopyScript, "sh", layout, "app", "app-zstd"])
            try registry.push("\(layout):app-zstd", as: "team/app:zstd", extra: ["--preserve-digests"])
            let zstdManifest = try command(skopeo(["inspect", "--raw", "--tls-verify=false", "docker://\(registry.host)/team/app:zstd"])).stdout
            #expect(zstdManifest.contains("tar+zstd"))
            let zstd = try await store.pullImage(name: "zstd", from: try registry.source("team/app:zstd"))
            #expect(zstd.reusedLayers == 0 && zstd.layers == image.layers)
            #expect(try TreeSnapshot("\(pool.root)/images/zstd", withMtimes: true).differences(from: expected) == [])
        }
    }

    /// Two images sharing a base layer: the second pull downloads only its own layer
    /// (the registry's log counts the blob GETs), btrfs shows both built on the same
    /// base subvolume, and deleting one image frees only its own layer.
    @Test func sharedBaseLayerIsFetchedOnce() async throws {
        try await withRegistry { pool, registry in
            let layout = try buildRegistryImages(in: pool.directory.path)
            try registry.push("\(layout):app", as: "shared/app:1")
            try registry.push("\(layout):other", as: "shared/other:1")
            let store = pool.store
            let layers = LayerStore(poolRoot: pool.root)
            let progress = Mutex<[LayerProgress]>([])
            let app = try await store.pullImage(name: "app", from: try registry.source("shared/app:1"))
            let appGETs = try registry.blobGETs("shared/app")
            #expect(Set(appGETs).count == 4, "config + 3 layers: \(appGETs)")

            let other = try await store.pullImage(name: "other", from: try registry.source("shared/other:1"),
                                                    layerProgress: { update in progress.withLock { $0.append(update) } })
            let otherGETs = try registry.blobGETs("shared/other")
            #expect(otherGETs.count == 2, "config + its own layer only: \(otherGETs)")
            #expect(other.reusedLayers == 1 && other.layers[0] == app.layers[0])
            let phases = progress.withLock { $0 }
            #expect(phases.contains { $0.index == 0 && $0.phase == .present })
            #expect(phases.contains { $0.index == 1 && $0.phase == .done && $0.bytes == $0.total && $0.total > 0 })

            // btrfs-progs: both images' second layers are snapshots of the one base subvolume.
            let base = try command(["btrfs", "subvolume", "show", "\(pool.root)/layers/\(Digest.encoded(app.layers[0]))"]).output
            for chainID in [app.layers[1], other.layers[1]] {
                let show = try command(["btrfs", "subvolume", "show", "\(pool.root)/layers/\(Digest.encoded(chainID))"]).output
                #expect(field("Parent UUID", show) == field("UUID", base))
            }
            let listed = try layers.layers()
            #expect(listed.count == 4)
            #expect(listed.first { $0.chainID == app.layers[0] }?.images == ["app", "other"])
            #expect(listed.first { $0.chainID == other.layers[1] }?.images == ["other"])
            #expect(listed.first { $0.chainID == other.layers[1] }?.parentChainID == app.layers[0])

            // Pulling again fetches no blob at all.
            let again = try await store.pullImage(name: "other", from: try registry.source("shared/other:1"))
            #expect(again.reusedLayers == 2 && again.downloadedBytes == 0)
            #expect(try registry.blobGETs("shared/other").count == 3, "only the config again")

            // A used layer is not deleted on request.
            let busy = #expect(throws: SystemError.self) { try layers.delete(app.layers[0]) }
            #expect(busy?.code == EBUSY && busy?.detail?.contains("app, other") == true)
            try store.deleteSubvolume("images/other")
            #expect(try layers.unusedLayers().map(\.chainID) == [other.layers[1]])
            #expect(try layers.deleteUnused() == [other.layers[1]])
            #expect(try layers.layers().count == 3)
            #expect(Files.exists("\(pool.root)/images/app/newfile"))
        }
    }

    /// An `oci:` layout goes through the same layer store and keeps its config too; the
    /// same image pulled from a registry afterwards reuses every layer (same chain IDs).
    @Test func layoutAndRegistryShareLayers() async throws {
        try await withRegistry { pool, registry in
            let layout = try buildRegistryImages(in: pool.directory.path)
            try registry.push("\(layout):app", as: "mixed/app:1")
            let store = pool.store
            let imported = try await store.importImage(name: "fromlayout", from: .oci(layout: layout, tag: "app"))
            let config = try #require(try store.metadata(of: "fromlayout")?.config)
            #expect(config.entrypoint == ["/bin/sh"] && config.workingDir == "/srv" && config.stopSignal == "SIGINT")
            #expect(imported.config == config && imported.layers.count == 3 && imported.reusedLayers == 0)

            let pulled = try await store.pullImage(name: "fromregistry", from: try registry.source("mixed/app:1"))
            #expect(pulled.layers == imported.layers && pulled.reusedLayers == 3 && pulled.downloadedBytes == 0)
            #expect(try registry.blobGETs("mixed/app").count == 1, "the config only")
            #expect(try store.metadata(of: "fromregistry")?.config == config)
            // Both images are snapshots of the one top layer.
            let top = try command(["btrfs", "subvolume", "show", "\(pool.root)/layers/\(Digest.encoded(imported.layers[2]))"]).output
            for name in ["fromlayout", "fromregistry"] {
                let show = try command(["btrfs", "subvolume", "show", "\(pool.root)/images/\(name)"]).output
                #expect(field("Parent UUID", show) == field("UUID", top))
            }
        }
    }

    /// A two-platform index: the host's entry by default, another on request; an index
    /// or manifest for another platform only is refused by name.
    @Test func platformSelection() async throws {
        try await withRegistry { pool, registry in
            let layout = try buildRegistryImages(in: pool.directory.path)
            let host = Platform.host
            let foreign = host.architecture == "arm64" ? "amd64" : "arm64"
            try command(["sh", "-c", platformIndexScript, "sh", layout, "multi", "app=linux/\(host.architecture)", "other=linux/\(foreign)"])
            try command(["sh", "-c", platformIndexScript, "sh", layout, "foreign-only", "big=linux/\(foreign)"])
            try registry.push("\(layout):multi", as: "multi/app:1")
            try registry.push("\(layout):foreign-only", as: "multi/foreign:1")
            try registry.push("\(layout):big", as: "multi/single:1")
            let store = pool.store
            _ = try await store.pullImage(name: "native", from: try registry.source("multi/app:1"))
            #expect(fileText("\(pool.root)/images/native/newfile") == "new\n")
            let picked = try await store.pullImage(name: "picked", from: try registry.source("multi/app:1", platform: try Platform.parse("linux/\(foreign)")))
            #expect(fileText("\(pool.root)/images/picked/other") == "other\n")
            #expect(try store.metadata(of: "picked")?.platform.architecture == foreign)
            #expect(try store.metadata(of: "picked")?.digest == picked.digest)

            for name in ["multi/foreign:1", "multi/single:1"] {
                do {
                    _ = try await store.pullImage(name: "wrong", from: try registry.source(name))
                    Issue.record("\(name): pulled an image for another platform")
                } catch let error as SystemError {
                    #expect(error.object == "\(registry.host)/\(name)", "\(render(error))")
                    #expect(error.detail?.contains("linux/\(foreign)") == true && error.detail?.contains(host.description) == true, "\(render(error))")
                }
            }
            #expect(try store.contents().images["wrong"] == nil)
        }
    }

    /// A blob changed in the registry's storage (same length), one cut short, and an
    /// unknown tag: each a clear error naming the reference, nothing half-imported.
    @Test func tamperedTruncatedAndUnknown() async throws {
        try await withRegistry { pool, registry in
            let layout = try buildRegistryImages(in: pool.directory.path)
            try registry.push("\(layout):other", as: "bad/tampered:1")
            try registry.push("\(layout):app", as: "bad/truncated:1")
            let store = pool.store
            let layers = LayerStore(poolRoot: pool.root)

            // Tampered: one byte of the top layer flipped.
            let tampered = try manifestLayers(registry, "bad/tampered:1").last!
            var bytes = try #require(try Files.read(registry.blobData(tampered)))
            bytes[bytes.count / 2] ^= 0xff
            try Files.writeAtomically(registry.blobData(tampered), bytes, mode: 0o644)
            do {
                _ = try await store.pullImage(name: "tampered", from: try registry.source("bad/tampered:1"))
                Issue.record("a tampered blob was imported")
            } catch let error as SystemError {
                #expect(error.object == "\(registry.host)/bad/tampered:1", "\(render(error))")
                #expect(error.operation.contains(tampered), "names the blob: \(render(error))")
                #expect(error.detail?.contains("expected \(tampered)") == true && error.detail?.contains("content is sha256:") == true, "\(render(error))")
            }
            #expect(try store.contents().images["tampered"] == nil)
            #expect(try layers.layers().map(\.images).allSatisfy(\.isEmpty), "only complete layers below the bad one")
            #expect(try LayerStore.classify(store.contents().layerArea).leftovers.isEmpty)
            #expect(try Files.list("\(pool.root)/layers/.downloads").isEmpty, "the bad bytes were deleted")

            // Truncated: the registry serves fewer bytes than the manifest says.
            let truncated = try manifestLayers(registry, "bad/truncated:1")[1]
            let data = try #require(try Files.read(registry.blobData(truncated)))
            try Files.writeAtomically(registry.blobData(truncated), data.prefix(data.count / 2), mode: 0o644)
            do {
                _ = try await store.pullImage(name: "truncated", from: try registry.source("bad/truncated:1"))
                Issue.record("a truncated blob was imported")
            } catch let error as SystemError {
                #expect(error.object == "\(registry.host)/bad/truncated:1", "\(render(error))")
                #expect(error.operation.contains(truncated) || error.detail?.contains(truncated) == true, "\(render(error))")
            }
            #expect(try store.contents().images["truncated"] == nil && LayerStore.classify(store.contents().layerArea).leftovers.isEmpty)

            // Unknown tag and unknown repository.
            for name in ["bad/tampered:nope", "bad/nothing:1"] {
                do {
                    _ = try await store.pullImage(name: "unknown", from: try registry.source(name))
                    Issue.record("\(name) was imported")
                } catch let error as SystemError {
                    #expect(error.object == "\(registry.host)/\(name)", "\(render(error))")
                    #expect(error.detail?.contains("not found (404)") == true, "\(render(error))")
                }
                do {
                    _ = try store.resolve(try registry.source(name))
                    Issue.record("\(name) resolved")
                } catch let error as SystemError {
                    #expect(error.object == "\(registry.host)/\(name)" && error.detail?.contains("404") == true, "\(render(error))")
                }
            }
            #expect(try store.contents().images.isEmpty)
        }
    }

    /// The registry is killed in the middle of a layer and started again: the pull goes
    /// on from where it stopped (the second registry's log shows a 206 for the rest).
    @Test func resumesAfterTheRegistryDies() async throws {
        try await withRegistry(poolSize: 768 << 20) { pool, registry in
            let layout = try buildRegistryImages(in: pool.directory.path, bigMiB: 96)
            try registry.push("\(layout):big", as: "flaky/big:1")
            let big = try manifestLayers(registry, "flaky/big:1").last!
            let killedAt = Mutex<UInt64?>(nil)
            let blobSize = Mutex<UInt64>(0)
            var store = pool.store
            store.retry = RetryPolicy(attempts: 8, initialDelay: 0.2, maximumDelay: 1)
            let image = try await store.pullImage(name: "big", from: try registry.source("flaky/big:1"), layerProgress: { update in
                guard update.digest == big, update.phase == .downloading, update.bytes > 0, update.bytes < update.total else { return }
                blobSize.withLock { $0 = update.total }
                let first = killedAt.withLock { value -> Bool in
                    if value != nil { return false }
                    value = update.bytes
                    return true
                }
                guard first else { return }
                registry.kill()
                try? registry.start()
            })
            let offset = try #require(killedAt.withLock { $0 })
            #expect(offset > 0)
            let resumed = try registry.requests().filter { $0.method == "GET" && $0.uri.hasSuffix(big) && $0.status == 206 }
            #expect(!resumed.isEmpty, "a ranged GET continued the blob")
            let total = blobSize.withLock { $0 }
            #expect(resumed.allSatisfy { ($0.written ?? .max) <= Int(total - offset) }, "only the rest: \(resumed), blob \(total), killed at \(offset)")
            #expect(try sha256sum("\(pool.root)/images/big/big") == (try sha256sum("\(pool.directory.path)/G/rootfs/big")))
            #expect(image.layers.count == 2)
        }
    }

    /// A pinned reference resolves without a request; a tag with exactly one HEAD.
    @Test func resolvingCostsOneHeadAndPinnedNone() async throws {
        try await withRegistry { pool, registry in
            let layout = try buildRegistryImages(in: pool.directory.path)
            try registry.push("\(layout):base", as: "plan/base:1")
            let store = pool.store
            let before = try registry.requests().count
            let digest = try store.resolve(try registry.source("plan/base:1"))
            let afterTag = try registry.requests()
            #expect(afterTag.dropFirst(before).filter { $0.uri.contains("/manifests/") }.map(\.method) == ["HEAD"])
            let pinned = try registry.source("plan/base@\(digest)")
            #expect(try store.resolve(pinned) == digest)
            #expect(try registry.requests().count == afterTag.count, "no request for a pinned reference")
            let image = try await store.pullImage(name: "pinned", from: pinned)
            #expect(image.digest == digest)
        }
    }

    /// TLS with the test's own CA: refused without it, pulled with `ca`.
    @Test func tlsWithAnExtraCA() async throws {
        try await withRegistry(tls: true) { pool, registry in
            let layout = try buildRegistryImages(in: pool.directory.path)
            try registry.push("\(layout):base", as: "tls/base:1")
            let store = pool.store
            do {
                _ = try await store.pullImage(name: "untrusted", from: try registry.source("tls/base:1", useCA: false))
                Issue.record("a registry with an unknown CA was trusted")
            } catch let error as SystemError {
                #expect(error.object == "\(registry.host)/tls/base:1", "\(render(error))")
                #expect(error.detail?.lowercased().contains("certificate") == true, "\(render(error))")
            }
            _ = try await store.pullImage(name: "trusted", from: try registry.source("tls/base:1"))
            #expect(fileText("\(pool.root)/images/trusted/etc/motd") == "base\n")
            // Plain HTTP to a TLS port is not silently upgraded or accepted.
            let plain = RegistrySource(reference: try registry.reference("tls/base:1"), security: TransportSecurity(allowPlainHTTP: true))
            #expect(throws: SystemError.self) { try store.resolve(plain) }
        }
    }

    /// htpasswd Basic auth and Bearer tokens: credentials from the auth file work, a
    /// missing or wrong password is a clear error, and the password appears in no
    /// message and no file tupp wrote.
    @Test(arguments: [TestRegistry.Auth.basic, .token])
    func authentication(_ auth: TestRegistry.Auth) async throws {
        try await withRegistry(auth: auth) { pool, registry in
            let work = pool.directory.path
            let layout = try buildRegistryImages(in: work)
            try registry.push("\(layout):base", as: "private/base:1")
            let good = "\(work)/auth-good.json", bad = "\(work)/auth-bad.json"
            func authFile(_ password: String) -> String {
                let encoded = Base64.encode(Array("\(TestRegistry.user):\(password)".utf8))
                return #"{"auths": {"\#(registry.host)": {"auth": "\#(encoded)"}}}"#
            }
            try Files.writeAtomically(good, text: authFile(TestRegistry.password))
            try Files.writeAtomically(bad, text: authFile("wrong-" + TestRegistry.password))
            var messages: [String] = []

            for (files, label) in [([String](), "no credentials"), ([bad], "wrong password")] {
                let store = ImageStore(poolRoot: pool.root, credentials: CredentialStore(files: files))
                do {
                    _ = try await store.pullImage(name: "denied", from: try registry.source("private/base:1"))
                    Issue.record("\(label): pulled a private image")
                } catch let error as SystemError {
                    messages.append(error.description)
                    #expect(error.object == "\(registry.host)/private/base:1", "\(render(error))")
                    if label == "wrong password" {
                        #expect(error.detail?.contains("'\(TestRegistry.user)'") == true && error.detail?.contains(bad) == true, "\(render(error))")
                    }
                }
            }
            let store = ImageStore(poolRoot: pool.root, credentials: CredentialStore(files: ["\(work)/missing.json", good]))
            let image = try await store.pullImage(name: "private", from: try registry.source("private/base:1"))
            #expect(fileText("\(pool.root)/images/private/etc/motd") == "base\n")
            #expect(try store.resolve(try registry.source("private/base:1")) == image.digest)
            if auth == .token {
                let log = try #require(try Files.readText(registry.tokenLog))
                #expect(log.contains(#""scope": ["repository:private/base:pull"]"#), "\(log)")
                #expect(log.contains(#""who": "bad""#) && log.contains(#""who": "anonymous""#))
            }
            // The secret is nowhere tupp wrote to or spoke.
            #expect(!messages.joined().contains(TestRegistry.password))
            #expect(try filesContaining(TestRegistry.password, below: pool.root).isEmpty)
            #expect(!"\(image)".contains(TestRegistry.password))
        }
    }
}

/// The layer digests of a pushed image's manifest (skopeo's view).
func manifestLayers(_ registry: TestRegistry, _ name: String) throws -> [String] {
    let flags = registry.tls ? ["--cert-dir", "\(registry.directory)/skopeo-certs"] : ["--tls-verify=false"]
    let raw = try command(skopeo(["inspect", "--raw"] + flags + ["docker://\(registry.host)/\(name)"])).stdout
    return raw.split(separator: "\"").filter { $0.hasPrefix("sha256:") && $0.count == 71 }.map(String.init).dropFirst().map { $0 }
}

/// The value of `name:` in `btrfs subvolume show` output.
func field(_ name: String, _ output: String) -> String? {
    for line in output.split(separator: "\n") {
        let trimmed = String(line).trimmingCharacters()
        if trimmed.hasPrefix(name + ":") { return String(trimmed.dropFirst(name.count + 1)).trimmingCharacters() }
    }
    return nil
}
