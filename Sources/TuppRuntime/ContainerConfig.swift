import TuppBase
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
    /// Exactly what the command keeps (bounding, permitted and effective sets); the rest is dropped.
    public var capabilities: [Capability]
    /// Seconds between SIGTERM and SIGKILL on stop.
    public var stopTimeout: Double
    /// DIR/log rotates to DIR/log.1 at this size.
    public var logLimitBytes: Int

    public init(name: String, rootfs: String, hostname: String? = nil,
                namespaces: Set<Namespace> = Set(Namespace.allCases), mounts: [Mount] = [],
                command: [String], env: [String: String] = [:], workdir: String = "/",
                restart: RestartPolicy = .no, capabilities: [Capability] = Capability.defaults,
                stopTimeout: Double = 10, logLimitBytes: Int = 1 << 20) {
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
        guard logLimitBytes >= 4096 else { throw refuse("logLimitBytes", "must be at least 4096") }
        for text in [name, rootfs, workdir, hostname ?? ""] + command + env.keys + env.values
            + mounts.flatMap({ [$0.target, $0.source ?? ""] + $0.options }) where text.utf8.contains(0) {
            throw refuse("*", "strings must not contain NUL bytes")
        }
    }
}
