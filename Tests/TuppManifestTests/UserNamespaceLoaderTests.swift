import Testing
import TuppManifest
import TuppManifestLoader

@Suite struct UserNamespaceLoaderTests {
    static let text = """
        version: 1
        defaults: { userns: auto }
        userns: { range: { start: 1879048192, size: 655360 } }
        storage: { root: /tmp/pool }
        images: { box: { busybox: /bin/busybox } }
        containers:
          web: { image: box, command: [sh] }
          legacy: { image: box, command: [sh], userns: host }
          nested: { image: box, command: [sh], delegateCgroup: true }
        """

    func manifest(_ files: [(String, String)]) -> Result<Manifest, ManifestLoader.Failure> {
        ManifestLoader.load(files: files.map { ($0.0, Array($0.1.utf8)) }, project: "p").map(\.manifest)
    }

    @Test func defaultsApplyUnlessTheContainerSaysOtherwise() throws {
        let m = try manifest([("/tmp/a.yaml", Self.text)]).get()
        #expect(m.defaults.userns == .auto)
        #expect(m.userNamespaces?.range == IDRange(start: 1_879_048_192, size: 655_360))
        #expect(m.userns(of: m.containers["web"]!) == .auto)
        #expect(m.userns(of: m.containers["legacy"]!) == .host)
        #expect(m.containers["web"]!.userns == nil, "the container itself says nothing")
        #expect(m.containers["nested"]!.delegateCgroup && !m.containers["web"]!.delegateCgroup)
    }

    @Test func sectionsRepeatedInAnotherFileMustMatch() {
        let same = """
            version: 1
            defaults: { userns: auto }
            userns: { range: { start: 1879048192, size: 655360 } }
            """
        #expect((try? manifest([("/tmp/a.yaml", Self.text), ("/tmp/b.yaml", same)]).get()) != nil)
        let other = """
            version: 1
            defaults: { userns: host }
            """
        guard case .failure(let f) = manifest([("/tmp/a.yaml", Self.text), ("/tmp/b.yaml", other)]) else {
            Issue.record("differing defaults were accepted")
            return
        }
        #expect(f.diagnostics.contains { $0.file == "/tmp/b.yaml" && $0.message.contains("defaults is already declared differently at /tmp/a.yaml:2:11") },
                "\(f.diagnostics.map(\.message))")
    }

    @Test func aRangeEndingPastTheLastIdIsRefused() {
        let text = """
            version: 1
            userns: { range: { start: 4294901760, size: 131072 } }
            """
        guard case .failure(let f) = manifest([("/tmp/a.yaml", text)]) else {
            Issue.record("accepted")
            return
        }
        #expect(f.diagnostics.first?.message == "userns.range ends at 4295032831, beyond the last valid id 4294967294")
    }

    @Test func aUserNamespaceKindPointsAtUserns() {
        let text = """
            version: 1
            storage: { root: /tmp/pool }
            images: { box: { busybox: /bin/busybox } }
            containers:
              web: { image: box, command: [sh], namespaces: [mount, user] }
            """
        guard case .failure(let f) = manifest([("/tmp/a.yaml", text)]) else {
            Issue.record("accepted")
            return
        }
        #expect(f.diagnostics.first?.message.contains("give the container `userns: auto`") == true)
    }
}
