import Testing
import TuppBase
import TuppManifest
import TuppManifestLoader
import TuppSystem
import TuppTestSupport

/// `healthcheck`, `onUnhealthy`, `stopSignal`, `dependsOn`, `envFile` and `restart:
/// unless-stopped` as the loader reads and checks them.
@Suite struct LifecycleLoaderTests {
    func manifest(_ containers: String) -> String {
        """
        version: 1
        storage: { root: /tmp/pool }
        images:
          box: { busybox: /bin/busybox }
        containers:
        \(containers)
        """
    }

    func load(_ text: String, file: String = "/tmp/t/m.yaml") -> Result<LoadedManifest, ManifestLoader.Failure> {
        ManifestLoader.load(files: [(file, Array(text.utf8))])
    }

    func diagnostics(_ text: String) -> [Diagnostic] {
        if case .failure(let f) = load(text) { return f.diagnostics }
        return []
    }

    @Test func readsEveryLifecycleField() throws {
        let text = manifest("""
              db:
                image: box
                command: [sleep, "1000"]
                healthcheck: { command: [pg_isready, -q], interval: 2s, timeout: 500ms, retries: 5, startPeriod: 1m }
                onUnhealthy: restart
                stopSignal: SIGINT
                restart: unless-stopped
              app:
                image: box
                command: [sleep, "1000"]
                healthcheck: { command: "wget -q -O- localhost" }
                stopSignal: quit
                dependsOn: { db: { condition: healthy, restart: true }, job: completed }
              job:
                image: box
                command: ["true"]
                stopSignal: 10
                dependsOn: [db]
            """)
        guard case .success(let loaded) = load(text) else { Issue.record("\(diagnostics(text))"); return }
        let db = try #require(loaded.manifest.containers["db"])
        #expect(db.lifecycle.healthcheck == Healthcheck(command: ["pg_isready", "-q"], interval: 2, timeout: 0.5, retries: 5, startPeriod: 60))
        #expect(db.lifecycle.onUnhealthy == .restart)
        #expect(db.lifecycle.stopSignal?.number == 2)
        #expect(db.restart == .unlessStopped)
        let app = try #require(loaded.manifest.containers["app"])
        #expect(app.lifecycle.healthcheck?.command == ["/bin/sh", "-c", "wget -q -O- localhost"], "a string runs through the shell")
        #expect(app.lifecycle.healthcheck?.interval == 30 && app.lifecycle.healthcheck?.retries == 3, "Docker's defaults")
        #expect(app.lifecycle.stopSignal?.number == 3)
        #expect(app.lifecycle.dependsOn == ["db": Dependency(.healthy, restart: true), "job": Dependency(.completed)])
        let job = try #require(loaded.manifest.containers["job"])
        #expect(job.lifecycle.dependsOn == ["db": Dependency(.started)])
        #expect(job.lifecycle.stopSignal?.description == "SIGUSR1")
    }

    @Test func aDependencyCycleIsAnErrorAtTheEdge() {
        let text = manifest("""
              a:
                image: box
                command: ["true"]
                dependsOn: { b: started }
              b:
                image: box
                command: ["true"]
                dependsOn:
                  c: started
              c:
                image: box
                command: ["true"]
                dependsOn: { a: started }
            """)
        let found = diagnostics(text)
        #expect(found.count == 1, "\(found)")
        #expect(found.first?.message.contains("cycle: a → b → c → a") == true, "\(found)")
        #expect(found.first?.mark == Mark(line: 9, column: 18), "at `b` in a's dependsOn")
    }

    @Test func dependingOnAnUnknownContainerOrOnItselfIsAnError() {
        let text = manifest("""
              app:
                image: box
                command: ["true"]
                dependsOn: { dbb: healthy, app: started }
              db:
                image: box
                command: ["true"]
                healthcheck: { command: ["true"] }
            """)
        let found = diagnostics(text).sorted { $0.mark < $1.mark }
        #expect(found.count == 2, "\(found)")
        #expect(found.first?.message.contains("depends on \"dbb\", which is not declared; did you mean \"db\"?") == true, "\(found)")
        #expect(found.first?.mark == Mark(line: 9, column: 18))
        #expect(found.last?.message.contains("cannot depend on itself") == true)
        #expect(found.last?.mark == Mark(line: 9, column: 32))
    }

    @Test func healthyNeedsAHealthCheckOnAnImageWithoutConfiguration() {
        let text = manifest("""
              app:
                image: box
                command: ["true"]
                dependsOn: { db: healthy }
              db:
                image: box
                command: ["true"]
            """)
        let found = diagnostics(text)
        #expect(found.map(\.message).contains { $0.contains("\"db\" has no healthcheck") }, "\(found)")
    }

    @Test func badValuesPointAtTheirToken() {
        let text = manifest("""
              app:
                image: box
                command: ["true"]
                stopSignal: SIGKILL
                onUnhealthy: reboot
                restart: unles-stopped
                healthcheck: { command: ["true"], retries: 0, interval: 1ms, tiemout: 1s }
                dependsOn: { db: ready }
              db:
                image: box
                command: ["true"]
            """)
        let messages = diagnostics(text).map { "\($0.mark): \($0.message)" }
        #expect(messages.contains { $0.hasPrefix("9:17:") && $0.contains("stopSignal \"SIGKILL\"") }, "\(messages)")
        #expect(messages.contains { $0.hasPrefix("10:18:") && $0.contains("onUnhealthy must be none or restart") }, "\(messages)")
        #expect(messages.contains { $0.hasPrefix("11:14:") && $0.contains("did you mean \"unless-stopped\"") }, "\(messages)")
        #expect(messages.contains { $0.contains("retries must be 1…1000") }, "\(messages)")
        #expect(messages.contains { $0.contains("interval must be at least 10ms") }, "\(messages)")
        #expect(messages.contains { $0.contains("unknown key \"tiemout\"") && $0.contains("did you mean \"timeout\"") }, "\(messages)")
        #expect(messages.contains { $0.hasPrefix("13:22:") && $0.contains("must be one of started, healthy, completed") }, "\(messages)")
    }

    @Test func envFilesAreReadInOrderAndEnvWins() throws {
        let dir = try TemporaryDirectory("tupp-envfile")
        defer { dir.remove() }
        try Files.writeAtomically("\(dir.path)/base.env", text: """
            # defaults
            export LEVEL=info
            NAME = base # a comment
            QUOTED='single $HOME # kept'
            ESCAPED="line one\\nline two"
            MULTI="first
            second"
            EMPTY=

            """)
        try Files.writeAtomically("\(dir.path)/local.env", text: "LEVEL=debug\nNAME=local\n")
        let text = manifest("""
              app:
                image: box
                command: ["true"]
                envFile: [./base.env, local.env]
                env: { NAME: declared }
            """)
        guard case .success(let loaded) = load(text, file: "\(dir.path)/m.yaml") else {
            Issue.record("\(diagnostics(text))")
            return
        }
        let app = try #require(loaded.manifest.containers["app"])
        #expect(app.lifecycle.envFiles == ["\(dir.path)/base.env", "\(dir.path)/local.env"])
        #expect(app.lifecycle.fileEnvironment == ["LEVEL": "debug", "NAME": "local", "QUOTED": "single $HOME # kept",
                                                 "ESCAPED": "line one\nline two", "MULTI": "first\nsecond", "EMPTY": ""])
    }

    @Test func aBrokenOrMissingEnvFileIsAnErrorAtItsEntry() throws {
        let dir = try TemporaryDirectory("tupp-envfile")
        defer { dir.remove() }
        try Files.writeAtomically("\(dir.path)/bad.env", text: "OK=1\nJUSTANAME\n")
        let text = manifest("""
              app:
                image: box
                command: ["true"]
                envFile: [bad.env, missing.env]
            """)
        guard case .failure(let failure) = load(text, file: "\(dir.path)/m.yaml") else {
            Issue.record("loaded a manifest with a broken env file")
            return
        }
        let messages = failure.diagnostics.map { "\($0.mark): \($0.message)" }
        #expect(messages.contains { $0.hasPrefix("9:15:") && $0.contains("bad.env:2: \"JUSTANAME\" needs =VALUE") }, "\(messages)")
        #expect(messages.contains { $0.hasPrefix("9:24:") && $0.contains("missing.env") && $0.contains("No such file") }, "\(messages)")
    }

    @Test func envFileSyntax() {
        func parse(_ text: String) -> [String: String]? {
            guard case .success(let pairs) = EnvFile.parse(text) else { return nil }
            return Dictionary(pairs.map { ($0.key, $0.value) }, uniquingKeysWith: { _, b in b })
        }
        #expect(parse("A=1\r\nB=two words\n") == ["A": "1", "B": "two words"])
        #expect(parse("A=x#not-a-comment") == ["A": "x#not-a-comment"])
        #expect(parse("A=\"quote \\\" inside\"") == ["A": "quote \" inside"])
        #expect(parse("A='unterminated") == nil)
        #expect(parse("1A=x") == nil)
        #expect(parse("A=\"x\" trailing") == nil)
        #expect(parse("A=1\nA=2") == ["A": "2"], "a later line wins")
    }

    @Test func signalNames() {
        #expect(Signal("SIGTERM")?.number == 15 && Signal("term")?.number == 15 && Signal("15")?.number == 15)
        #expect(Signal("SIGRTMIN+3")?.number == 37)
        #expect(Signal("SIGKILL") == nil && Signal("STOP") == nil && Signal("SIGNOPE") == nil && Signal("99") == nil)
    }
}
