import Glibc
import TuppBase
import TuppFacts
import TuppManifest
import TuppSystem

/// Shorthands for the manifest's `Mount`, the mounts a container gets on top of /proc,
/// /dev and /sys. Bind targets are created to match their source (file or directory) and
/// every target is resolved inside the root without following symlinks.
extension Mount {
    public static func bind(_ source: String, at target: String, readonly: Bool = false, options: [String] = []) -> Mount {
        Mount(kind: .bind, source: source, target: target, options: options, readonly: readonly)
    }

    public static func tmpfs(at target: String, options: [String] = []) -> Mount {
        Mount(kind: .tmpfs, target: target, options: options)
    }
}

/// Everything tupp-shim needs to run one container.
public struct ContainerConfig: Sendable, Equatable {
    public var name: String
    /// Absolute host path of the container's root (its writable snapshot).
    public var rootfs: String
    /// Set in the container's UTS namespace; defaults to `name` when `.uts` is requested.
    public var hostname: String?
    public var namespaces: Set<Namespace>
    public var mounts: [Mount]
    /// argv; the first entry is looked up in the container's PATH.
    public var command: [String]
    public var env: [String: String]
    /// Absolute path inside the container; must exist.
    public var workdir: String
    public var restart: RestartPolicy
    /// The bounding set; the rest is dropped. As uid 0 the command has exactly these
    /// (permitted and effective); any other user only its `ambientCapabilities`.
    public var capabilities: [Capability]
    /// Raised into the ambient set, so that a non-root user keeps them across exec
    /// (`capabilities.ambient`); each must also be in `capabilities`.
    public var ambientCapabilities: [Capability]
    /// Who the command runs as, resolved in the container's /etc/passwd and /etc/group at
    /// start; nil: root.
    public var user: UserSpec?
    /// The rootfs is mounted read-only; /tmp, /run and /var/tmp get a tmpfs unless
    /// `mounts` cover them.
    public var readOnly: Bool
    /// Bytes of the /dev/shm tmpfs.
    public var shmSize: Int
    /// setrlimit before exec; every limit not named here gets tupp's default
    /// (`Ulimit.defaults`), never the caller's.
    public var ulimits: [Ulimit]
    /// Host devices made available inside, beyond tupp's minimal /dev.
    public var devices: [DeviceGrant]
    public var seccomp: SeccompPolicy
    /// Limits of the container's cgroup.
    public var resources: ResourceLimits
    /// Where the container's cgroup goes; nil runs it without one (no limits, no device
    /// policy, no stop through the cgroup) — the engine always sets it.
    public var cgroup: CgroupPlacement?
    /// Seconds between SIGTERM and SIGKILL on stop.
    public var stopTimeout: Double
    /// DIR/log rotates to DIR/log.1 at this size.
    public var logLimitBytes: Int
    /// What stop sends first (then SIGKILL after `stopTimeout`).
    public var stopSignal: Int32 = 15
    /// Run by the supervisor inside the container; nil: none.
    public var healthcheck: Healthcheck?
    public var onUnhealthy: OnUnhealthy = .none
    /// A user namespace of its own with these maps (`userns: auto`): container root is
    /// an unprivileged host user, the rootfs and binds are idmapped mounts. nil: the host's.
    public var userNamespace: IDMapping?
    /// Container root manages its own cgroup (cgroup v2): a cgroup namespace rooted at it,
    /// cgroup2 read-write at /sys/fs/cgroup, its delegation files owned by container root.
    public var delegateCgroup: Bool

    public init(name: String, rootfs: String, hostname: String? = nil,
                namespaces: Set<Namespace> = Set(Namespace.allCases), mounts: [Mount] = [],
                command: [String], env: [String: String] = [:], workdir: String = "/",
                restart: RestartPolicy = .no, capabilities: [Capability] = Capability.defaults,
                stopTimeout: Double = 10, logLimitBytes: Int = 1 << 20,
                ambientCapabilities: [Capability] = [], user: UserSpec? = nil, readOnly: Bool = false,
                shmSize: Int = 64 << 20, ulimits: [Ulimit] = [], devices: [DeviceGrant] = [],
                seccomp: SeccompPolicy = .default, resources: ResourceLimits = ResourceLimits(),
                cgroup: CgroupPlacement? = nil, userNamespace: IDMapping? = nil, delegateCgroup: Bool = false) {
        self.userNamespace = userNamespace
        self.delegateCgroup = delegateCgroup
        self.name = name
        self.rootfs = rootfs
        self.hostname = hostname ?? (namespaces.contains(.uts) ? name : nil)
        self.namespaces = namespaces
        self.mounts = mounts
        self.command = command
        self.env = env
        self.workdir = workdir
        self.restart = restart
        self.capabilities = capabilities
        self.stopTimeout = stopTimeout
        self.logLimitBytes = logLimitBytes
        self.ambientCapabilities = ambientCapabilities
        self.user = user
        self.readOnly = readOnly
        self.shmSize = shmSize
        self.ulimits = ulimits
        self.devices = devices
        self.seccomp = seccomp
        self.resources = resources
        self.cgroup = cgroup
    }

    /// The mounts the container gets: `mounts`, plus with `readOnly` a tmpfs on each of
    /// /tmp, /run and /var/tmp that no mount covers (at or above it), so programs still
    /// have somewhere to write.
    public var effectiveMounts: [Mount] {
        guard readOnly else { return mounts }
        let scratch: [(String, String)] = [("/tmp", "1777"), ("/run", "755"), ("/var/tmp", "1777")]
        let added = scratch.filter { target, _ in
            !mounts.contains { $0.target == target || target.hasPrefix($0.target + "/") }
        }.map { Mount.tmpfs(at: $0.0, options: ["mode=\($0.1)"]) }
        return mounts + added
    }

    /// Rejects what tupp-shim would refuse, with the field named, before anything starts.
    public func validate() throws(SystemError) {
        func refuse(_ field: String, _ why: String) -> SystemError {
            SystemError.failure("validate container", "\(name).\(field)", why)
        }
        guard rootfs.hasPrefix("/") else { throw refuse("rootfs", "must be an absolute path, got \"\(rootfs)\"") }
        guard namespaces.contains(.mount) else { throw refuse("namespaces", "the mount namespace is required") }
        guard let first = command.first, !first.isEmpty else { throw refuse("command", "must not be empty") }
        guard workdir.hasPrefix("/") else { throw refuse("workdir", "must be an absolute path, got \"\(workdir)\"") }
        if let hostname {
            guard namespaces.contains(.uts) else { throw refuse("hostname", "needs the uts namespace") }
            guard !hostname.isEmpty, hostname.utf8.count <= 64 else { throw refuse("hostname", "must be 1–64 bytes") }
        }
        for key in env.keys where key.isEmpty || key.contains("=") {
            throw refuse("env", "invalid variable name \"\(key)\"")
        }
        for mount in mounts {
            guard mount.target.hasPrefix("/"), Paths.normalize(mount.target) == mount.target, mount.target != "/" else {
                throw refuse("mounts", "target \"\(mount.target)\" must be a normalized absolute path other than /")
            }
            if mount.kind == .bind {
                guard let source = mount.source, source.hasPrefix("/") else {
                    throw refuse("mounts", "bind to \(mount.target) needs an absolute source")
                }
            }
            if mount.kind == .volume {
                throw refuse("mounts", "volume \(mount.source ?? "?") at \(mount.target) must be given as a bind of its subvolume")
            }
            for option in mount.options where option.isEmpty || option.contains(",") {
                throw refuse("mounts", "option \"\(option)\" of \(mount.target) is empty or holds a comma")
            }
        }
        guard stopTimeout >= 0, stopTimeout <= 3600 else { throw refuse("stopTimeout", "must be 0…3600 s") }
        for capability in ambientCapabilities where !capabilities.contains(capability) {
            throw refuse("capabilities.ambient", "\(capability) must also be in the capability set")
        }
        guard shmSize >= 4096 else { throw refuse("shmSize", "must be at least 4 KiB") }
        for limit in ulimits {
            if let soft = limit.soft, soft > (limit.hard ?? .max) {
                throw refuse("ulimits.\(limit.name.rawValue)", "soft limit \(soft) above the hard limit \(limit.hard.map(String.init) ?? "")")
            }
        }
        guard devices.count <= 64 else { throw refuse("devices", "at most 64 devices") }
        for device in devices {
            guard device.path.hasPrefix("/dev/"), Paths.normalize(device.path) == device.path, device.path.count > 5 else {
                throw refuse("devices", "\(device.path) must be a normalized path below /dev")
            }
            guard !device.permissions.isEmpty, device.permissions.allSatisfy({ "rwm".contains($0) }) else {
                throw refuse("devices", "permissions \"\(device.permissions)\" of \(device.path) must be letters of rwm")
            }
        }
        try resources.validate(container: name)
        if let cgroup {
            guard !name.isEmpty, !name.contains("/"), name != ".", name != "..", !cgroup.parent.contains("/") else {
                throw refuse("name", "must be usable as a cgroup directory name")
            }
            if let refusal = cgroup.layout.refusals(for: resources).first { throw refuse("resources.\(refusal.kind.rawValue)", refusal.reason) }
        } else if !resources.declared.isEmpty {
            throw refuse("resources", "limits need a cgroup")
        }
        guard logLimitBytes >= 4096 else { throw refuse("logLimitBytes", "must be at least 4096") }
        if delegateCgroup {
            guard let cgroup, cgroup.layout.version == .v2 else {
                throw refuse("delegateCgroup", "needs a cgroup on cgroup v2 (this host's controllers are on v1)")
            }
            guard !mounts.contains(where: { $0.target == "/sys" || $0.target == "/sys/fs" || $0.target == "/sys/fs/cgroup" }) else {
                throw refuse("delegateCgroup", "/sys/fs/cgroup is mounted by tupp; no mount may cover it")
            }
        }
        if let mapping = userNamespace {
            for (what, lines) in [("uid", mapping.uids), ("gid", mapping.gids)] {
                guard !lines.isEmpty, lines.count <= 5 else { throw refuse("userns", "the \(what) map needs 1…5 lines") }
                for line in lines where line.count == 0 || line.inside + line.count > IDRange.idLimit || line.outside + line.count > IDRange.idLimit {
                    throw refuse("userns", "\(what) map line \(line) leaves the valid ids 0…4294967294")
                }
            }
            guard mapping.hostUID(0) != nil, mapping.hostGID(0) != nil else { throw refuse("userns", "the maps must map root (0)") }
            guard !mapping.isIdentity else { throw refuse("userns", "an identity map is the host's namespace; leave userNamespace nil") }
        }
        guard stopSignal > 0, stopSignal < 65, stopSignal != SIGKILL, stopSignal != SIGSTOP else {
            throw refuse("stopSignal", "\(stopSignal) is no signal a process can catch")
        }
        if let check = healthcheck {
            guard !check.command.isEmpty, !check.command[0].isEmpty, check.command.count <= 64 else {
                throw refuse("healthcheck.command", "must have 1–64 arguments")
            }
            guard check.interval >= 0.001, check.timeout >= 0.001, check.startPeriod >= 0, (1...1000).contains(check.retries) else {
                throw refuse("healthcheck", "interval and timeout must be positive, startPeriod not negative, retries 1…1000")
            }
            if check.command.contains(where: { $0.utf8.contains(0) }) { throw refuse("healthcheck.command", "strings must not contain NUL bytes") }
        }
        for text in [name, rootfs, workdir, hostname ?? ""] + command + env.keys + env.values + devices.map(\.path)
            + mounts.flatMap({ [$0.target, $0.source ?? ""] + $0.options }) where text.utf8.contains(0) {
            throw refuse("*", "strings must not contain NUL bytes")
        }
    }
}
