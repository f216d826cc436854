import Testing
import TuppFacts
@testable import TuppRuntime
import TuppManifest
import TuppSystem

/// Plain values: no root, no processes.
struct UnitTests {
    /// The runtime takes the manifest's capability table: containerd's defaults, names to
    /// kernel numbers, and a declared add/drop adjusting the defaults.
    @Test func capabilitiesComeFromTheManifestTable() throws {
        let config = ContainerConfig(name: "web", rootfs: "/r", command: ["true"])
        #expect(config.capabilities.sorted().map(\.description) == [
            "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_SETGID", "CAP_SETUID",
            "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
        ])
        func named(_ names: String...) throws -> [Capability] { try names.map { try #require(Capability.named($0)) } }
        let declared = Container(name: "web", image: "box", command: ["true"],
                                 capabilitiesAdd: try named("net_raw"), capabilitiesDrop: try named("CAP_KILL", "chown"))
        #expect(declared.effectiveCapabilities.contains(try named("CAP_NET_RAW")[0]))
        #expect(!declared.effectiveCapabilities.contains(try named("KILL")[0]))
        #expect(Capability.all.count == 41)
        #expect(Capability.named("FLY") == nil)
        #expect(Capability.named("CAP_NET_RAW")?.number == 13)
        #expect(Capability.named("sys_admin")?.number == 21)
    }

    @Test func specFileIsNulSeparatedPairs() {
        var config = ContainerConfig(name: "web", rootfs: "/pool/containers/web", command: ["sh", "-c", "echo a b"],
                                     env: ["B": "2", "A": "x=y"], restart: .onFailure, stopTimeout: 1.5)
        config.mounts = [.bind("/srv/data", at: "/data", readonly: true), .tmpfs(at: "/tmp", options: ["size=64m", "noexec"])]
        let pairs = SpecFile.decode(SpecFile.encode(config, .plain()))
        #expect(pairs.first! == ("version", "1"))
        func values(_ key: String) -> [String] { pairs.filter { $0.key == key }.map(\.value) }
        #expect(values("hostname") == ["web"])
        #expect(values("namespace") == ["mount", "uts", "ipc", "net", "pid"])
        #expect(values("arg") == ["sh", "-c", "echo a b"])
        #expect(values("env") == ["A=x=y", "B=2"])
        #expect(values("restart") == ["on-failure"])
        #expect(values("cap") == ["0", "1", "4", "3", "6", "7", "8", "10", "5"])
        #expect(values("stop-timeout-ms") == ["1500"])
        #expect(values("mount") == ["bind", "tmpfs"])
        #expect(values("mount-options") == ["", "size=64m,noexec"])
        #expect(values("mount-readonly") == ["1", "0"])
    }

    @Test func stateRecordParses() {
        let record = StateRecord.parse("""
            version=1
            shim-pid=10
            shim-start=200
            init-pid=11
            init-start=201
            state=restarting
            restarts=3
            started-at=1700000000.250
            exit-signal=9
            exit-at=1700000001.500
            ns-mnt=4026531840
            ns-net=4026531993
            """)
        #expect(record.shimPID == 10 && record.initPID == 11 && record.initStartTime == 201)
        #expect(record.state == "restarting" && record.restarts == 3)
        #expect(record.exit == ExitRecord(status: .signal(9), at: 1_700_000_001.5))
        #expect(record.namespaces == [.mount: 4_026_531_840, .net: 4_026_531_993])
        #expect(StateRecord.parse(record.render()).exit == record.exit)
    }

    @Test func validationNamesTheField() {
        func message(_ change: (inout ContainerConfig) -> Void) -> String? {
            var config = ContainerConfig(name: "web", rootfs: "/r", command: ["true"])
            change(&config)
            do { try config.validate() } catch { return error.description }
            return nil
        }
        #expect(message { _ in } == nil)
        #expect(message { $0.rootfs = "rel" }?.hasPrefix("validate container web.rootfs") == true)
        #expect(message { $0.namespaces = [.pid] }?.contains("mount namespace is required") == true)
        #expect(message { $0.command = [] }?.contains("web.command") == true)
        #expect(message { $0.mounts = [.tmpfs(at: "/a/../etc")] }?.contains("web.mounts") == true)
        #expect(message { $0.mounts = [.bind("relative", at: "/x")] }?.contains("absolute source") == true)
        #expect(message { $0.namespaces = [.mount] }?.contains("web.hostname") == true)
        #expect(message { $0.env = ["A=B": "c"] }?.contains("web.env") == true)
    }

    @Test func execArgvForTheCLI() {
        let runtime = Runtime(shimPath: "/usr/lib/tupp/tupp-shim")
        #expect(runtime.execCommand(directory: "/run/tupp/web", command: ["sh", "-c", "id"], env: ["B": "2", "A": "1"],
                                    tty: true, workdir: "/srv") ==
            ["/usr/lib/tupp/tupp-shim", "exec", "/run/tupp/web", "--tty", "--env", "A=1", "--env", "B=2",
             "--workdir", "/srv", "--", "sh", "-c", "id"])
    }
}
