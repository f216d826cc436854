import Glibc
import Testing
import TuppFacts
import TuppManifest
@testable import TuppRuntime
import TuppSystem

/// The judgement behind confinement, with plain values: no root, no processes.
struct ConfinementUnitTests {
    // MARK: cgroup layout

    static func mount(_ point: String, _ type: String, _ options: [String]) -> MountInfo {
        MountInfo.parse("30 1 0:26 / \(point) rw,relatime - \(type) \(type) \(options.joined(separator: ","))")[0]
    }

    /// This project's CI VM: v1 controllers, an empty unified tree.
    static let hybrid = CgroupLayout.Facts(
        mounts: [mount("/sys/fs/cgroup/cpu", "cgroup", ["rw", "cpu"]), mount("/sys/fs/cgroup/cpuacct", "cgroup", ["rw", "cpuacct"]),
                 mount("/sys/fs/cgroup/memory", "cgroup", ["rw", "memory"]), mount("/sys/fs/cgroup/pids", "cgroup", ["rw", "pids"]),
                 mount("/sys/fs/cgroup/blkio", "cgroup", ["rw", "blkio"]), mount("/sys/fs/cgroup/devices", "cgroup", ["rw", "devices"]),
                 mount("/sys/fs/cgroup/freezer", "cgroup", ["rw", "freezer"]), mount("/sys/fs/cgroup/cpuset", "cgroup", ["rw", "cpuset"]),
                 mount("/sys/fs/cgroup/systemd", "cgroup", ["rw", "name=systemd"]), mount("/sys/fs/cgroup/unified", "cgroup2", ["rw"])],
        unifiedControllers: "\n", v1RootFiles: ["memory.memsw.limit_in_bytes", "cpu.cfs_quota_us", "blkio.bfq.io_service_bytes"],
        schedulers: ["none", "mq-deadline"], commandLine: "console=ttyS0")

    /// A current distribution: everything on cgroup2.
    static let unified = CgroupLayout.Facts(
        mounts: [mount("/sys/fs/cgroup", "cgroup2", ["rw", "nsdelegate"])],
        unifiedControllers: "cpuset cpu io memory hugetlb pids rdma misc\n", v1RootFiles: [], schedulers: ["bfq"],
        commandLine: "root=/dev/sda1 quiet")

    @Test func theLayoutFollowsWhatTheHostMounts() throws {
        let v1 = try #require(CgroupLayout.choose(Self.hybrid))
        #expect(v1.version == .v1)
        #expect(v1.hierarchies.map(\.mountPoint) == ["/sys/fs/cgroup/blkio", "/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpuacct",
                                                    "/sys/fs/cgroup/devices", "/sys/fs/cgroup/freezer", "/sys/fs/cgroup/memory",
                                                    "/sys/fs/cgroup/pids"], "cpuset and name=systemd are not joined")
        #expect(v1.swapAccounting && v1.cpuQuota)
        #expect(v1.ioWeightFile == nil, "BFQ is built but no device uses it")

        let v2 = try #require(CgroupLayout.choose(Self.unified))
        #expect(v2.version == .v2)
        #expect(v2.hierarchies == [.init(mountPoint: "/sys/fs/cgroup", controllers: ["cpuset", "cpu", "io", "memory", "hugetlb", "pids", "rdma", "misc"])])
        #expect(v2.swapAccounting && v2.ioWeightFile == "io.bfq.weight")

        var noSwap = Self.unified
        noSwap.commandLine = "quiet swapaccount=0"
        #expect(CgroupLayout.choose(noSwap)?.swapAccounting == false)
        var bare = Self.unified
        bare.mounts = []
        #expect(CgroupLayout.choose(bare) == nil)
    }

    @Test func limitsTheHostCannotEnforceAreRefused() throws {
        let v1 = try #require(CgroupLayout.choose(Self.hybrid))
        let all = ResourceLimits(memory: 1 << 30, memorySwap: 2 << 30, cpus: 1.5, cpuWeight: 100, pids: 100, ioWeight: 100)
        #expect(v1.refusals(for: all).map(\.description) == [
            "resources.ioWeight: I/O weights need the BFQ I/O scheduler, and no block device uses it (/sys/block/*/queue/scheduler)",
        ])
        var noSwap = Self.hybrid
        noSwap.v1RootFiles.remove("memory.memsw.limit_in_bytes")
        #expect(try #require(CgroupLayout.choose(noSwap)).refusals(for: all).map(\.kind) == [.memorySwap, .ioWeight])
        #expect(try #require(CgroupLayout.choose(Self.unified)).refusals(for: all).isEmpty)
        let empty = CgroupLayout(version: .v2, hierarchies: [.init(mountPoint: "/sys/fs/cgroup/unified", controllers: [])])
        #expect(empty.refusals(for: all).map(\.kind) == [.memory, .memorySwap, .cpus, .cpuWeight, .pids, .ioWeight])
        #expect(empty.refusals(for: ResourceLimits()).isEmpty, "no limits, nothing to refuse: membership works anywhere")
    }

    // MARK: cgroup files

    @Test func v2FilesAndTheirFormats() throws {
        let layout = try #require(CgroupLayout.choose(Self.unified))
        let limits = ResourceLimits(memory: 512 << 20, memorySwap: 1 << 30, cpus: 1.5, cpuWeight: 200, pids: 512, ioWeight: 300)
        #expect(CgroupFiles.settings(for: limits, on: layout).map(\.description) == [
            "memory.max=536870912", "memory.swap.max=536870912", "cpu.max=150000 100000", "cpu.weight=200", "pids.max=512",
            "io.bfq.weight=118",
        ])
        // Unset limits read as unlimited or the default; swap as much as memory (Docker).
        var plain = Self.unified
        plain.schedulers = ["none"]
        let noBFQ = try #require(CgroupLayout.choose(plain))
        #expect(CgroupFiles.settings(for: ResourceLimits(memory: 32 << 20), on: noBFQ).map(\.description) == [
            "memory.max=33554432", "memory.swap.max=33554432", "cpu.max=max 100000", "cpu.weight=100", "pids.max=max",
            "io.weight=default 100",
        ])
        #expect(CgroupFiles.normalize(file: "memory.max", text: "max\n") == "max")
        #expect(CgroupFiles.normalize(file: "io.weight", text: "default 100\n8:0 200\n") == "100")
        #expect(CgroupFiles.normalize(file: "cpu.max", text: "max 100000\n") == "max 100000")
        #expect(CgroupFiles.field("oom_kill", in: "low 0\nhigh 0\nmax 12\noom 3\noom_kill 2\noom_group_kill 0\n") == 2)
        #expect(CgroupFiles.field("usage_usec", in: "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n") == 1500)
        #expect(CgroupFiles.field("oom_kill", in: "oom_kill_disable 0\nunder_oom 0\noom_kill 4\n") == 4, "v1 memory.oom_control")
    }

    @Test func v1FilesFollowRuncAndSystemd() throws {
        let layout = try #require(CgroupLayout.choose(Self.hybrid))
        let limits = ResourceLimits(memory: 32 << 20, cpus: 0.5, cpuWeight: 100, pids: 64)
        #expect(CgroupFiles.settings(for: limits, on: layout).map(\.description) == [
            "memory.limit_in_bytes=33554432", "memory.memsw.limit_in_bytes=67108864", "cpu.cfs_period_us=100000",
            "cpu.cfs_quota_us=50000", "cpu.shares=1024", "pids.max=64",
        ])
        #expect(CgroupFiles.settings(for: ResourceLimits(), on: layout).map(\.description) == [
            "memory.limit_in_bytes=-1", "memory.memsw.limit_in_bytes=-1", "cpu.cfs_period_us=100000", "cpu.cfs_quota_us=-1",
            "cpu.shares=1024", "pids.max=max",
        ])
        // Weights keep their default and proportions (systemd's conversions).
        #expect(CgroupFiles.shares(forWeight: 100) == 1024 && CgroupFiles.shares(forWeight: 1) == 10)
        #expect(CgroupFiles.shares(forWeight: 10000) == 102_400)
        #expect(CgroupFiles.blkioWeight(forWeight: 100) == 500 && CgroupFiles.blkioWeight(forWeight: 1) == 10)
        #expect(CgroupFiles.bfqWeight(forWeight: 100) == 100 && CgroupFiles.bfqWeight(forWeight: 1) == 1)
        #expect(CgroupFiles.bfqWeight(forWeight: 10000) == 1000)
        // A byte count that is not a page multiple reads back rounded down: compare that.
        #expect(CgroupFiles.settings(for: ResourceLimits(memory: (32 << 20) + 100), on: layout).first?.value == String(32 << 20))
        #expect(CgroupFiles.normalize(file: "memory.limit_in_bytes", text: "9223372036854771712\n") == "max")
        #expect(CgroupFiles.normalize(file: "cpu.cfs_quota_us", text: "-1\n") == "max")
    }

    @Test func memoryAndSwapAreWrittenInAnOrderTheKernelAccepts() {
        let raise = [CgroupFiles.Setting(.memory, "memory.limit_in_bytes", "100"), CgroupFiles.Setting(.memorySwap, "memory.memsw.limit_in_bytes", "200"),
                     CgroupFiles.Setting(.pids, "pids.max", "5")]
        // Memory 100 above the current memory+swap 50: swap goes first.
        #expect(CgroupFiles.orderMemory(raise, currentSwapLimit: 50).map(\.file) == ["memory.memsw.limit_in_bytes", "memory.limit_in_bytes", "pids.max"])
        #expect(CgroupFiles.orderMemory(raise, currentSwapLimit: nil).map(\.file) == ["memory.limit_in_bytes", "memory.memsw.limit_in_bytes", "pids.max"])
        let unlimited = [CgroupFiles.Setting(.memory, "memory.limit_in_bytes", "-1"), CgroupFiles.Setting(.memorySwap, "memory.memsw.limit_in_bytes", "-1")]
        #expect(CgroupFiles.orderMemory(unlimited, currentSwapLimit: 64).map(\.file) == ["memory.memsw.limit_in_bytes", "memory.limit_in_bytes"])
    }

    @Test func driftComparesWhatTheFilesRead() {
        let expected = [CgroupFiles.Setting(.memory, "memory.limit_in_bytes", "-1"), CgroupFiles.Setting(.pids, "pids.max", "100"),
                        CgroupFiles.Setting(.cpus, "cpu.cfs_quota_us", "50000")]
        let observed = ["memory.limit_in_bytes": "9223372036854771712\n", "pids.max": "999\n"]
        #expect(CgroupFiles.drift(expected: expected, observed: observed).map(\.description) == [
            "resources.pids: pids.max is 999, expected 100", "resources.cpus: cpu.cfs_quota_us is missing, expected 50000",
        ])
    }

    @Test func placementNamesTheDirectories() throws {
        let placement = CgroupPlacement(layout: try #require(CgroupLayout.choose(Self.hybrid)), parent: "tupp-abc123")
        let cgroup = placement.cgroup(for: "web")
        // blkio is left out where no I/O weight takes effect: nothing to enforce there.
        #expect(cgroup.directories == ["cpu", "cpuacct", "devices", "freezer", "memory", "pids"].map { "/sys/fs/cgroup/\($0)/tupp-abc123/web" })
        #expect(cgroup.killDirectory == "/sys/fs/cgroup/freezer/tupp-abc123/web")
        #expect(cgroup.oomFile == "/sys/fs/cgroup/memory/tupp-abc123/web/memory.oom_control")
        let v2 = CgroupPlacement(layout: try #require(CgroupLayout.choose(Self.unified)), parent: "tupp-abc123").cgroup(for: "web")
        #expect(v2 == ContainerCgroup(directories: ["/sys/fs/cgroup/tupp-abc123/web"], killDirectory: "/sys/fs/cgroup/tupp-abc123/web",
                                      oomFile: "/sys/fs/cgroup/tupp-abc123/web/memory.events"))
    }

    // MARK: devices

    @Test func theDevicePolicyAllowsTuppsDevAndGrantsOnly() {
        let fuse = DeviceNode(path: "/dev/fuse", kind: .char, major: 10, minor: 229, mode: 0o666, uid: 0, gid: 0, permissions: "rwm")
        let writes = DevicePolicy.v1Writes(DevicePolicy.rules(granting: [fuse]))
        #expect(writes.first! == ("devices.deny", "a"))
        #expect(writes.dropFirst().map(\.value) == ["c *:* m", "b *:* m", "c 1:3 rwm", "c 1:5 rwm", "c 1:7 rwm", "c 1:8 rwm",
                                                    "c 1:9 rwm", "c 5:0 rwm", "c 5:2 rwm", "c 136:* rwm", "c 10:229 rwm"])
    }

    // MARK: seccomp

    static let host = SeccompHost(architecture: "amd64", nativeArchitecture: "x86_64", kernel: (6, 1))

    @Test func theBuiltinProfileIsMobysAdjustedToTheCapabilities() throws {
        let profile = SeccompProfile.builtin
        let plain = try profile.resolve(capabilities: Capability.defaults, host: Self.host)
        #expect(plain.defaultAction == .errno(1))
        #expect(plain.architectures == ["x86_64", "x86", "x32"])
        func rules(_ filter: SeccompFilter, _ name: String) -> [String] { filter.rules.filter { $0.syscall == name }.map(\.description) }
        #expect(rules(plain, "read") == ["allow read"])
        #expect(rules(plain, "clone") == ["allow clone 0 me 2114060288 0"], "no namespace flags without CAP_SYS_ADMIN")
        #expect(rules(plain, "clone3") == ["errno:38 clone3"])
        #expect(rules(plain, "unshare").isEmpty && rules(plain, "mount").isEmpty && rules(plain, "bpf").isEmpty)
        #expect(rules(plain, "io_uring_setup").isEmpty && rules(plain, "keyctl").isEmpty)
        #expect(rules(plain, "personality") == ["allow personality 0 eq 0 0", "allow personality 0 eq 8 0", "allow personality 0 eq 131072 0",
                                                "allow personality 0 eq 131080 0", "allow personality 0 eq 4294967295 0"])
        #expect(rules(plain, "ptrace") == ["allow ptrace"], "kernel ≥ 4.8")
        #expect(rules(plain, "arch_prctl") == ["allow arch_prctl"] && rules(plain, "s390_runtime_instr").isEmpty)
        #expect(rules(plain, "reboot").isEmpty && rules(plain, "clock_settime").isEmpty)

        let admin = try profile.resolve(capabilities: Capability.defaults + ["SYS_ADMIN", "SYS_BOOT"].compactMap(Capability.named),
                                        host: Self.host)
        #expect(rules(admin, "clone") == ["allow clone"])
        #expect(rules(admin, "clone3") == ["allow clone3"])
        #expect(rules(admin, "unshare") == ["allow unshare"] && rules(admin, "mount") == ["allow mount"])
        #expect(rules(admin, "reboot") == ["allow reboot"])

        let old = try profile.resolve(capabilities: Capability.defaults, host: SeccompHost(architecture: "amd64", nativeArchitecture: "x86_64", kernel: (4, 4)))
        #expect(rules(old, "ptrace").isEmpty, "before 4.8 a tracer could bypass the filter")
        let arm = try profile.resolve(capabilities: Capability.defaults, host: SeccompHost(architecture: "arm64", nativeArchitecture: "aarch64", kernel: (6, 1)))
        #expect(arm.architectures == ["aarch64", "arm"] && rules(arm, "arch_prctl").isEmpty)
    }

    @Test func profilesInOCIAndDockerFormat() throws {
        func parse(_ text: String) throws -> SeccompProfile { try SeccompProfile.parse(Array(text.utf8), describedAs: "test.json") }
        let oci = try parse("""
            {"defaultAction": "SCMP_ACT_KILL_PROCESS", "architectures": ["SCMP_ARCH_X86_64"],
             "syscalls": [{"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
                          {"names": ["kill"], "action": "SCMP_ACT_ERRNO"},
                          {"names": ["ioctl"], "action": "SCMP_ACT_ALLOW",
                           "args": [{"index": 1, "value": 21505, "op": "SCMP_CMP_EQ"}, {"index": 1, "value": 21506, "op": "SCMP_CMP_EQ"}]},
                          {"names": ["fcntl"], "action": "SCMP_ACT_ALLOW",
                           "args": [{"index": 0, "value": 3, "op": "SCMP_CMP_LE"}, {"index": 1, "value": 1, "op": "SCMP_CMP_EQ"}]}]}
            """)
        let filter = try oci.resolve(capabilities: [], host: Self.host)
        #expect(filter.defaultAction == .killProcess && filter.architectures == ["x86_64"])
        #expect(filter.rules.map(\.description) == [
            "allow read", "allow write", "errno:1 kill",
            // Two conditions on one argument are ORed as separate rules (runc).
            "allow ioctl 1 eq 21505 0", "allow ioctl 1 eq 21506 0",
            "allow fcntl 0 le 3 0 1 eq 1 0",
        ])
        // The default's own action adds nothing; a legacy "name" works.
        let legacy = try parse("""
            {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38,
             "syscalls": [{"name": "getpid", "action": "SCMP_ACT_ALLOW"}, {"names": ["uname"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]}
            """)
        let resolved = try legacy.resolve(capabilities: [], host: Self.host)
        #expect(resolved.defaultAction == .errno(38) && resolved.rules.map(\.description) == ["allow getpid"])

        for (text, why) in [
            (#"{"defaultAction": "SCMP_ACT_NOTIFY"}"#, "unknown or unsupported"),
            (#"{"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/agent.sock"}"#, "listenerPath"),
            (#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["x"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 7, "value": 1, "op": "SCMP_CMP_EQ"}]}]}"#, "6 arguments"),
            (#"{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"], "archMap": [{"architecture": "SCMP_ARCH_X86_64"}]}"#, "both"),
        ] {
            let error = thrownError { _ = try parse(text).resolve(capabilities: [], host: Self.host) }
            #expect(error?.detail?.contains(why) == true, "\(text): \(String(describing: error?.detail))")
        }
        #expect(thrownError { _ = try parse("{not json") }?.detail?.hasPrefix("not a Docker/OCI seccomp profile") == true)
    }

    // MARK: users

    @Test func usersResolveAsRuncDoes() throws {
        let passwd = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n# comment\nbroken\n"
        let group = "root:x:0:root\nwheel:x:10:root,nobody\nnogroup:x:65534:\n"
        func resolve(_ text: String, passwd: String? = passwd, group: String? = group) throws -> ResolvedUser {
            try #require(UserSpec(text)).resolve(passwd: passwd, group: group)
        }
        #expect(try resolve("nobody") == ResolvedUser(uid: 65534, gid: 65534, groups: [10], home: "/nonexistent"))
        #expect(try resolve("0") == ResolvedUser(uid: 0, gid: 0, groups: [0, 10], home: "/root"))
        #expect(try resolve("nobody:wheel") == ResolvedUser(uid: 65534, gid: 10, groups: [10], home: "/nonexistent"))
        #expect(try resolve("1234:5") == ResolvedUser(uid: 1234, gid: 5, groups: [], home: "/"), "numbers need no entry")
        #expect(try resolve("0", passwd: nil, group: nil) == ResolvedUser(uid: 0, gid: 0, groups: [], home: "/root"))
        #expect(thrownError { _ = try resolve("ghost") }?.detail == "no such user in the container's /etc/passwd")
        #expect(thrownError { _ = try resolve("nobody", passwd: nil) }?.detail?.contains("has no /etc/passwd") == true)
        #expect(thrownError { _ = try resolve("nobody:ghosts") }?.operation == "resolve group")
        #expect(UserSpec("") == nil && UserSpec("a:") == nil && UserSpec("a:b:c") == nil && UserSpec(":1") == nil)
        #expect(UserSpec("app:staff")?.description == "app:staff")
    }

    // MARK: rlimits, mounts, spec

    @Test func rlimitDefaultsAreTheKernelsWithNofileRaised() {
        let defaults = Ulimit.defaults(threadsMax: 192_730)
        #expect(defaults.map(\.description) == [
            "cpu=unlimited:unlimited", "fsize=unlimited:unlimited", "data=unlimited:unlimited", "stack=8388608:unlimited",
            "core=0:unlimited", "rss=unlimited:unlimited", "nproc=96365:96365", "nofile=1024:524288", "memlock=8388608:8388608",
            "as=unlimited:unlimited", "locks=unlimited:unlimited", "sigpending=96365:96365", "msgqueue=819200:819200",
            "nice=0:0", "rtprio=0:0", "rttime=unlimited:unlimited",
        ])
        #expect(Set(defaults.map(\.name.resource)) == Set(0..<16), "every RLIMIT_* once")
        let effective = Ulimit.effective([Ulimit(.nofile, 65536), Ulimit(.nproc, soft: 1024, hard: 2048)], threadsMax: 192_730)
        #expect(effective.first { $0.name == .nofile }?.description == "nofile=65536:65536")
        #expect(effective.first { $0.name == .nproc }?.description == "nproc=1024:2048")
        #expect(effective.count == 16)
    }

    @Test func aReadOnlyRootGetsScratchTmpfsUnlessMountsCoverIt() {
        var config = ContainerConfig(name: "web", rootfs: "/r", command: ["true"], readOnly: true)
        #expect(config.effectiveMounts.map(\.target) == ["/tmp", "/run", "/var/tmp"])
        #expect(config.effectiveMounts.first?.options == ["mode=1777"])
        config.mounts = [.bind("/srv/tmp", at: "/tmp"), .tmpfs(at: "/var")]
        #expect(config.effectiveMounts.map(\.target) == ["/tmp", "/var", "/run"])
        config.readOnly = false
        #expect(config.effectiveMounts.map(\.target) == ["/tmp", "/var"])
    }

    @Test func theSpecCarriesTheResolvedSettings() throws {
        var config = ContainerConfig(name: "web", rootfs: "/pool/containers/web", command: ["sh"],
                                     ambientCapabilities: [Capability.named("NET_BIND_SERVICE")!], readOnly: true, shmSize: 1 << 28,
                                     ulimits: [Ulimit(.nofile, 4096)])
        config.capabilities.append(Capability.named("NET_BIND_SERVICE")!)
        var resolved = ResolvedSettings.plain(threadsMax: 200)
        resolved.user = ResolvedUser(uid: 1000, gid: 50, groups: [44, 10], home: "/home/app")
        resolved.declaredUlimits = [.nofile]
        resolved.ulimits = Ulimit.effective(config.ulimits, threadsMax: 200)
        resolved.devices = [DeviceNode(path: "/dev/fuse", kind: .char, major: 10, minor: 229, mode: 0o666, uid: 0, gid: 0, permissions: "rwm")]
        resolved.seccomp = SeccompFilter(defaultAction: .errno(1), architectures: ["x86_64", "x86"],
                                         rules: [SeccompRule(action: .allow, syscall: "read", conditions: [])])
        resolved.cgroup = ContainerCgroup(directories: ["/sys/fs/cgroup/memory/tupp-a/web", "/sys/fs/cgroup/freezer/tupp-a/web"],
                                          killDirectory: "/sys/fs/cgroup/freezer/tupp-a/web",
                                          oomFile: "/sys/fs/cgroup/memory/tupp-a/web/memory.oom_control")
        let pairs = SpecFile.decode(SpecFile.encode(config, resolved))
        func values(_ key: String) -> [String] { pairs.filter { $0.key == key }.map(\.value) }
        #expect(values("user-uid") == ["1000"] && values("user-gid") == ["50"] && values("user-group") == ["44", "10"])
        #expect(values("user-home") == ["/home/app"] && values("cap-ambient") == ["10"])
        #expect(values("readonly") == ["1"] && values("shm-size") == ["268435456"])
        #expect(values("mount-target") == ["/tmp", "/run", "/var/tmp"])
        #expect(values("device") == ["c 10 229 666 0 0 /dev/fuse"])
        #expect(values("rlimit") == ["7 4096 4096"])
        #expect(values("rlimit-default").count == 15 && values("rlimit-default").contains("3 8388608 unlimited"))
        #expect(values("seccomp") == ["errno:1"] && values("seccomp-arch") == ["x86_64", "x86"] && values("seccomp-rule") == ["allow read"])
        #expect(values("cgroup").count == 2 && values("cgroup-kill") == ["/sys/fs/cgroup/freezer/tupp-a/web"])
        #expect(values("cgroup-oom") == ["/sys/fs/cgroup/memory/tupp-a/web/memory.oom_control"])
    }

    @Test func confinementSettingsAreValidated() {
        func message(_ change: (inout ContainerConfig) -> Void) -> String? {
            var config = ContainerConfig(name: "web", rootfs: "/r", command: ["true"])
            change(&config)
            do { try config.validate() } catch { return error.description }
            return nil
        }
        #expect(message { $0.ambientCapabilities = [Capability.named("NET_ADMIN")!] }?.contains("web.capabilities.ambient") == true)
        #expect(message { $0.ulimits = [Ulimit(.nofile, soft: 10, hard: 5)] }?.contains("web.ulimits.nofile") == true)
        #expect(message { $0.devices = [DeviceGrant(path: "/etc/passwd")] }?.contains("below /dev") == true)
        #expect(message { $0.devices = [DeviceGrant(path: "/dev/fuse", permissions: "rwx")] }?.contains("letters of rwm") == true)
        #expect(message { $0.resources.memory = 100 }?.contains("web.resources.memory") == true)
        #expect(message { $0.resources.memorySwap = 1 << 30 }?.contains("needs memory") == true)
        #expect(message { $0.resources.cpuWeight = 0 }?.contains("1…10000") == true)
        #expect(message { $0.resources.pids = 10 }?.contains("limits need a cgroup") == true)
        #expect(message { $0.shmSize = 0 }?.contains("web.shmSize") == true)
    }

    @Test func theStateRecordCarriesOOMKills() {
        let record = StateRecord.parse("state=restarting\nexit-signal=9\nexit-at=10.5\nexit-oom=1\noom-kills=3\n")
        #expect(record.exit == ExitRecord(status: .signal(9), at: 10.5, oomKilled: true))
        #expect(record.oomKills == 3)
        #expect(StateRecord.parse(record.render()) == record)
        #expect(StateRecord.parse("state=exited\nexit-code=0\n").exit?.oomKilled == false)
    }
}
