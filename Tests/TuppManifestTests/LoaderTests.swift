import Testing
import TuppBase
import TuppManifest
import TuppManifestLoader
import TuppSystem
import TuppTestSupport

@Suite struct LoaderTests {
    static let seed = """
        version: 1
        storage:
          root: pool
          device: { file: ../pool.img, size: 2GiB }
        images:
          box: { busybox: /bin/busybox }
          layout: { oci: ./images/layout:v1.2 }
        networks:
          docker: { bridge: tupp0, subnet: 172.17.0.0/16 }
        containers:
          tupperware:
            image: box
            network: { attach: docker, address: 172.17.42.3 }
            command: ["/bin/sh", "-c", "exec sleep infinity"]
            env: { TERM: xterm, N: 3 }
            restart: no
            stopTimeout: 1m30s
        """

    func load(_ text: String) throws -> Manifest {
        switch ManifestLoaderTestSupport.load(text) {
        case .success(let loaded): return loaded.manifest
        case .failure(let f): throw Failure(text: f.rendered())
        }
    }

    struct Failure: Error, CustomStringConvertible { var text: String; var description: String { text } }

    func diagnostics(_ bytes: [UInt8]) -> [Diagnostic] {
        if case .failure(let f) = ManifestLoader.load(files: [("/tmp/t/m.yaml", bytes)]) { return f.diagnostics }
        return []
    }

    @Test func decodesTheSeedWithDefaults() throws {
        let m = try load(Self.seed)
        #expect(m.storage == Storage(root: "/tmp/test/pool", device: .init(file: "/tmp/pool.img", size: 2 << 30)))
        #expect(m.images["layout"]?.source == .oci(layout: "/tmp/test/images/layout", tag: "v1.2"))
        let net = try #require(m.networks["docker"])
        #expect(net.gateway == IPv4Address("172.17.0.1"))
        let c = try #require(m.containers["tupperware"])
        #expect(c.namespaces == [.mount, .uts, .ipc, .net, .pid])
        #expect(c.effectiveHostname == "tupperware")
        #expect(c.network?.address == IPv4Interface("172.17.42.3/16"))
        #expect(c.network?.interface == "eth0")
        #expect(c.restart == .no)
        #expect(c.stopTimeout == 90)
        #expect(c.env.map(\.key) == ["TERM", "N"] && c.env.map(\.value) == ["xterm", "3"])
        #expect(c.workdir == nil)
        #expect(c.effectiveCapabilities == Capability.defaults.sorted())
    }

    @Test func invalidUTF8IsLocated() {
        var bytes = Array("version: 1\nimages:\n  box: { busybox: \"/bin/".utf8)
        bytes += [0xC3, 0x28]
        bytes += Array("\" }\n".utf8)
        let d = diagnostics(bytes)
        #expect(d.count == 1)
        #expect(d.first?.message.contains("invalid UTF-8") == true)
        #expect(d.first?.mark.line == 3)
    }

    @Test func oversizedFileIsRefused() {
        let bytes = Array("version: 1\n# ".utf8) + [UInt8](repeating: UInt8(ascii: "x"), count: 4 << 20)
        let d = diagnostics(bytes)
        #expect(d.first?.message.contains("limited to") == true)
    }

    @Test func deepNestingIsRefused() {
        let text = "version: 1\nx: " + String(repeating: "[", count: 200) + String(repeating: "]", count: 200) + "\n"
        let d = diagnostics(Array(text.utf8))
        #expect(d.first?.message.contains("nesting deeper than") == true)
        #expect(d.first?.mark.line == 2)
    }

    @Test func tooManyKeysAreRefused() {
        var limits = YAMLLimits()
        limits.maxKeys = 10
        let text = "version: 1\nenv:\n" + (0..<20).map { "  k\($0): v\n" }.joined()
        guard case .failure(let f) = ManifestLoader.load(files: [("/tmp/m.yaml", Array(text.utf8))], limits: limits) else {
            Issue.record("accepted")
            return
        }
        #expect(f.diagnostics.first?.message.contains("more than 10 keys") == true)
    }

    /// The bounds README and CHANGELOG state, at their stated values: what is exactly at
    /// the limit is read, one more is refused.
    @Test func statedLimitsHoldAtTheirValues() {
        func refusal(_ bytes: [UInt8], _ words: String) -> Bool { diagnostics(bytes).contains { $0.message.contains(words) } }
        // 4 MiB.
        let header = Array("version: 1\n# ".utf8)
        let exactly = header + [UInt8](repeating: UInt8(ascii: "x"), count: (4 << 20) - header.count)
        #expect(exactly.count == 4 << 20 && !refusal(exactly, "limited to"))
        #expect(refusal(exactly + [UInt8(ascii: "x")], "manifests are limited to 4194304 bytes"))
        // 64 levels: the document's mapping and 63 lists inside it; one more is refused.
        func nested(_ levels: Int) -> [UInt8] {
            Array(("version: 1\nx: " + String(repeating: "[", count: levels - 1) + String(repeating: "]", count: levels - 1) + "\n").utf8)
        }
        #expect(!refusal(nested(64), "nesting deeper"))
        #expect(refusal(nested(65), "nesting deeper than 64 levels"))
        // 10,000 keys in one mapping.
        func keys(_ n: Int) -> [UInt8] { Array(("version: 1\nenv:\n" + (0..<n).map { "  k\($0): v\n" }.joined()).utf8) }
        #expect(!refusal(keys(10_000), "keys in one mapping"))
        #expect(refusal(keys(10_001), "more than 10000 keys in one mapping"))
        // 200,000 nodes after alias expansion: "version", "1", "x" and the list's items.
        func items(_ n: Int) -> [UInt8] { Array(("version: 1\nx: [" + Array(repeating: "0", count: n).joined(separator: ",") + "]\n").utf8) }
        #expect(!refusal(items(199_997), "nodes"))
        #expect(refusal(items(199_998), "more than 200000 nodes"))
        // …counting what aliases stand for: 20 copies of a 10,000-item list.
        let anchored = "version: 1\na: &l [" + Array(repeating: "0", count: 10_000).joined(separator: ",") + "]\nb: ["
            + Array(repeating: "*l", count: 20).joined(separator: ",") + "]\n"
        #expect(refusal(Array(anchored.utf8), "more than 200000 nodes (alias expansion bomb?)"))
    }

    @Test func multiDocumentFilesMerge() throws {
        let m = try load("""
            version: 1
            storage: { root: /p }
            images: { box: { busybox: /bin/busybox } }
            ---
            version: 1
            containers: { web: { image: box, command: [sh] } }
            """)
        #expect(m.containers["web"]?.image == "box")
    }

    @Test func volumesAndVolumeMountsDecode() throws {
        let m = try load("""
            version: 1
            storage: { root: /p }
            images: { box: { busybox: /bin/busybox } }
            volumes:
              pgdata: { size: 10GiB, owner: "999:999", mode: 0700, protect: true }
              plain:
            containers:
              db:
                image: box
                command: [sh]
                mounts:
                  - { type: volume, source: pgdata, target: /var/lib/postgresql/data }
                  - { type: volume, source: plain, target: /etc/app, readonly: true, options: [nosuid] }
            """)
        #expect(m.volumes["pgdata"] == Volume(name: "pgdata", settings: VolumeSettings(size: 10 << 30, owner: VolumeOwner(uid: 999, gid: 999),
                                                                                        mode: 0o700), protect: true))
        #expect(m.volumes["plain"] == Volume(name: "plain"), "every field is optional; an unquoted 0700 is read as its digits")
        #expect(m.containers["db"]?.mounts == [
            Mount(kind: .volume, source: "pgdata", target: "/var/lib/postgresql/data"),
            Mount(kind: .volume, source: "plain", target: "/etc/app", options: ["nosuid"], readonly: true),
        ], "a volume's source is its name, not a path")
        #expect(m.sources["volumes.pgdata"]?.mark == Mark(line: 5, column: 3))

        // Declared in two files: identically is one volume, differently an error at the second.
        let a = Array("version: 1\nstorage: { root: /p }\nvolumes: { data: { size: 1GiB } }\n".utf8)
        #expect((try? ManifestLoader.load(files: [("/t/a.yaml", a), ("/t/b.yaml", a)]).get())?.manifest.volumes.count == 1)
        let b = Array("version: 1\nvolumes: { data: { size: 2GiB } }\n".utf8)
        guard case .failure(let f) = ManifestLoader.load(files: [("/t/a.yaml", a), ("/t/b.yaml", b)]) else {
            Issue.record("accepted")
            return
        }
        #expect(f.diagnostics.map(\.message) == ["volume \"data\" is already declared differently at /t/a.yaml:3:12; names are global across files, so declarations must match"])
        #expect(diagnostics(Array("version: 1\nstorage: { root: /p }\nvolumes: { data: { mode: 755, owner: \"0:0\" } }\n".utf8)).isEmpty)
        #expect(diagnostics(Array("version: 1\nstorage: { root: /p }\nvolumes: { data: { modes: 755 } }\n".utf8)).first?.message
            == "unknown key \"modes\" in volume \"data\"; did you mean \"mode\"?")
    }

    @Test func identicalRedeclarationIsAccepted() throws {
        let m = try load("""
            version: 1
            storage: { root: /p }
            images: { box: { busybox: /bin/busybox } }
            ---
            version: 1
            storage: { root: /p }
            images: { box: { busybox: /bin/busybox } }
            """)
        #expect(m.images.count == 1)
    }

    @Test func everyErrorIsReportedAtOnce() {
        let text = """
            version: 1
            storage: { root: /p }
            images: { box: { busybox: /bin/busybox } }
            networks: { n: { bridge: this-name-is-too-long, subnet: 10.1.0.0/24 } }
            containers:
              a: { image: nope, command: [sh], restart: maybe }
              b: { image: box, command: [], hostname: "bad_name" }
            """
        let d = diagnostics(Array(text.utf8))
        #expect(d.count >= 4, "\(d)")
        #expect(Set(d.map(\.mark.line)) == [4, 6, 7])
    }

    @Test func renderedDiagnosticShowsLineAndCaret() {
        let text = "version: 1\ncontainers:\n  web: { image: box, comand: [sh] }\n"
        guard case .failure(let f) = ManifestLoader.load(files: [("m.yaml", Array(text.utf8))]) else {
            Issue.record("accepted")
            return
        }
        let unknown = f.diagnostics.first { $0.message.contains("comand") }!
        #expect(unknown.rendered(source: f.sources["m.yaml"]) == """
            m.yaml:3:22: error: unknown key "comand" in container "web"; did you mean "command"?
                  web: { image: box, comand: [sh] }
                                     ^
            """)
    }

    @Test("the example manifests are valid, each its own project")
    func examples() throws {
        let dir = String(#filePath.dropLast("Tests/TuppManifestTests/LoaderTests.swift".count)) + "manifests"
        guard case .success(let all) = ManifestLoader.loadProjects([dir]) else {
            Issue.record("manifests/ does not validate")
            return
        }
        #expect(all.map(\.project) == ["tupperware-tar", "tupperware", "web"])
        #expect(all.first { $0.project == "tupperware" }?.manifest.containers.keys.contains("tupperware") == true)
        for name in ["tupperware.yaml", "tupperware-tar.yaml", "web.yaml"] {
            if case .failure(let f) = ManifestLoader.load(["\(dir)/\(name)"]) { Issue.record("\(name): \(f.rendered())") }
        }
        // Together they are three projects: plan and apply take one at a time.
        guard case .failure(let f) = ManifestLoader.load([dir]) else {
            Issue.record("three projects loaded as one")
            return
        }
        #expect(f.diagnostics.first?.message.contains("these manifests form 3 projects") == true)
        guard case .success(let merged) = ManifestLoader.load([dir], project: "everything") else {
            Issue.record("--project does not make them one")
            return
        }
        #expect(merged.project == "everything" && merged.manifest.containers.count == 5)
    }

    @Test func theProjectIsTheKeyElseTheDirectory() throws {
        let dir = try TemporaryDirectory("My.Project")
        defer { dir.remove() }
        try Files.writeAtomically("\(dir.path)/a.yaml", Array("version: 1\n".utf8))
        guard case .success(let byDirectory) = ManifestLoader.load(["\(dir.path)/a.yaml"]) else { Issue.record("load"); return }
        #expect(byDirectory.project == Names.project(fromDirectory: Paths.basename(dir.path)))
        #expect(byDirectory.project.hasPrefix("myproject"))
        try Files.writeAtomically("\(dir.path)/b.yaml", Array("version: 1\nproject: shop\n".utf8))
        guard case .success(let byKey) = ManifestLoader.load(["\(dir.path)/b.yaml"]) else { Issue.record("load"); return }
        #expect(byKey.project == "shop")
        let bad = diagnostics(Array("version: 1\nproject: Shop!\n".utf8))
        #expect(bad.first?.message == "project name \"Shop!\" may contain only lowercase letters, digits, '-' and '_'")
        #expect(bad.first?.mark == Mark(line: 2, column: 10))
    }

    @Test func hostileInputsAreCheap() {
        // Billion laughs at full size: refused long before it costs memory or time.
        var text = "version: 1\na0: &a0 [" + Array(repeating: "\"lol\"", count: 10).joined(separator: ",") + "]\n"
        for i in 1...12 { text += "a\(i): &a\(i) [" + Array(repeating: "*a\(i - 1)", count: 10).joined(separator: ",") + "]\n" }
        let start = ContinuousClock.now
        let d = diagnostics(Array(text.utf8))
        #expect(ContinuousClock.now - start < .seconds(1))
        #expect(d.first?.message.contains("nodes") == true)
    }
}

@Suite struct UnitsTests {
    @Test(arguments: [("2GiB", UInt64(2) << 30), ("512MiB", 512 << 20), ("1G", 1 << 30), ("2GB", 2_000_000_000), ("4096", 4096), ("1.5GiB", 3 << 29)])
    func sizes(_ text: String, _ bytes: UInt64) throws {
        #expect(try Units.parseSize(text).get() == bytes)
    }

    @Test(arguments: ["", "GiB", "2 gigs", "-1GiB", "2XB"])
    func badSizes(_ text: String) {
        #expect(throws: Units.Problem.self) { try Units.parseSize(text).get() }
    }

    @Test(arguments: [("10s", 10.0), ("500ms", 0.5), ("1m30s", 90), ("2", 2), ("1h", 3600)])
    func durations(_ text: String, _ seconds: Double) throws {
        #expect(try Units.parseDuration(text).get() == seconds)
    }

    @Test func names() {
        #expect(Names.dnsLabelProblem("web-1") == nil)
        #expect(Names.dnsLabelProblem("-web") != nil)
        #expect(Names.hostnameProblem("a.b-c.d") == nil)
        #expect(Names.hostnameProblem(String(repeating: "a", count: 65)) != nil)
        #expect(Names.interfaceProblem("eth0") == nil)
        #expect(Names.interfaceProblem("a:b") != nil)
        #expect(Names.interfaceProblem("sixteen-bytes-xx") != nil)
        #expect(Names.hostsEntryProblem("db_1.svc-2.Example") == nil)
        #expect(Names.hostsEntryProblem(String(repeating: "a", count: 63) + ".b") == nil)
        for bad in ["", "x-", "-x", "a..b", "a.", "a\r\nb", "é", "a b", String(repeating: "a", count: 64), String(repeating: "a.", count: 127) + "aa"] {
            #expect(Names.hostsEntryProblem(bad) != nil, "\(bad)")
        }
    }

    @Test func ipv4() {
        #expect(IPv4Address("010.0.0.1") == nil)
        #expect(IPv4Network("10.0.0.0/8")?.contains(IPv4Address("10.255.0.1")!) == true)
        #expect(IPv4Network("10.0.0.1/8") == nil)
        #expect(IPv4Network("172.17.0.0/16")!.overlaps(IPv4Network("172.17.42.0/24")!))
        #expect(!IPv4Network("172.17.0.0/16")!.overlaps(IPv4Network("172.18.0.0/16")!))
        #expect(IPv4Network("10.9.0.0/24")!.broadcast.description == "10.9.0.255")
    }
}
