/// The desired state a set of manifest files declares (MANIFEST.md, format v1).
/// Several files and documents merge into one `Manifest`; names are global.
public struct Manifest: Sendable, Equatable {
    /// The `project:` key, when the files give one (see `LoadedManifest.project`).
    public var project: String?
    public var storage: Storage?
    public var images: [String: Image] = [:]
    public var networks: [String: Network] = [:]
    public var containers: [String: Container] = [:]
    public var volumes: [String: Volume] = [:]
    /// `defaults:` — what every container gets unless it says otherwise.
    public var defaults = ContainerDefaults()
    /// `userns:` — where containers with `userns: auto` get their host ids.
    public var userNamespaces: UserNamespaceSettings?
    /// Where each element came from, keyed by path ("containers.web.hostname").
    public var sources = SourceMap()

    public init() {}

    /// The container's `userns`, else `defaults.userns`, else host.
    public func userns(of container: Container) -> UserNamespaceMode {
        container.userns ?? defaults.userns ?? .host
    }
}

/// The btrfs pool that holds images/ and containers/.
public struct Storage: Sendable, Equatable {
    public var root: String
    public var device: Device?

    public init(root: String, device: Device? = nil) {
        self.root = root
        self.device = device
    }

    /// A loop-mounted image file backing the pool.
    public struct Device: Sendable, Equatable {
        public var file: String
        public var size: UInt64

        public init(file: String, size: UInt64) {
            self.file = file
            self.size = size
        }
    }
}

public struct Image: Sendable, Equatable {
    public enum Source: Sendable, Equatable, CustomStringConvertible {
        /// A static busybox binary, installed with one symlink per applet.
        case busybox(path: String)
        /// A rootfs tarball (plain, gzip, zstd, xz), e.g. `docker export` output.
        case tar(path: String)
        /// An OCI image layout directory and an optional tag (ref name).
        case oci(layout: String, tag: String?)
        /// A directory tree, copied.
        case directory(path: String)
        /// An image in an OCI registry, pulled by tag or digest.
        case registry(RegistryImage)

        public var kind: String {
            switch self {
            case .busybox: "busybox"
            case .tar: "tar"
            case .oci: "oci"
            case .directory: "directory"
            case .registry: "registry"
            }
        }

        public var location: String {
            switch self {
            case .busybox(let p), .tar(let p), .directory(let p): p
            case .oci(let layout, let tag): tag.map { "\(layout):\($0)" } ?? layout
            case .registry(let r): r.platform.map { "\(r.reference) (\($0))" } ?? r.reference
            }
        }

        /// Whether the image carries a config with a default command, environment and
        /// working directory (OCI layouts and registry images); the others need `command`.
        public var carriesConfig: Bool {
            switch self {
            case .oci, .registry: true
            case .busybox, .tar, .directory: false
            }
        }

        public var description: String { "\(kind): \(location)" }
    }

    public var name: String
    public var source: Source
    public var protect: Bool

    public init(name: String, source: Source, protect: Bool = false) {
        self.name = name
        self.source = source
        self.protect = protect
    }
}

/// `registry:` with its `platform`, `insecure` and `ca`.
public struct RegistryImage: Sendable, Equatable {
    /// The canonical reference, "docker.io/library/nginx:1.27" or "host:5000/app@sha256:…"
    /// (checked and normalized by the loader).
    public var reference: String
    /// "linux/arm64": the platform to pick from a multi-platform image; nil: the host's.
    public var platform: String?
    /// Plain HTTP (a registry on this host).
    public var insecure: Bool
    /// A PEM file of CA certificates trusted besides the system's.
    public var ca: String?

    public init(reference: String, platform: String? = nil, insecure: Bool = false, ca: String? = nil) {
        self.reference = reference
        self.platform = platform
        self.insecure = insecure
        self.ca = ca
    }

    /// Pinned by digest: the reference alone names the content, no request resolves it.
    public var isPinned: Bool { reference.contains("@sha256:") }
}

public struct Network: Sendable, Equatable {
    public var name: String
    /// Host bridge device name.
    public var bridge: String
    public var subnet: IPv4Network
    /// The bridge's address; containers route through it.
    public var gateway: IPv4Address
    public var mtu: Int?
    /// Masquerade the subnet's traffic leaving the host (nftables) and enable forwarding.
    public var nat: Bool

    public init(name: String, bridge: String, subnet: IPv4Network, gateway: IPv4Address? = nil, mtu: Int? = nil, nat: Bool = false) {
        self.name = name
        self.bridge = bridge
        self.subnet = subnet
        self.gateway = gateway ?? subnet.firstHost
        self.mtu = mtu
        self.nat = nat
    }
}

/// The kernel namespaces a container can get. `mount` is always required: the rootfs,
/// pivot_root and the masks happen in it.
public enum Namespace: String, CaseIterable, Sendable, Comparable {
    case mount, uts, ipc, net, pid

    /// The seed's `unshare --mount --uts --ipc --net --pid`.
    public static let defaults: [Namespace] = [.mount, .uts, .ipc, .net, .pid]

    /// The name under /proc/PID/ns/.
    public var procName: String { self == .mount ? "mnt" : rawValue }

    public static func < (a: Namespace, b: Namespace) -> Bool {
        allCases.firstIndex(of: a)! < allCases.firstIndex(of: b)!
    }
}

/// What the supervisor does when the command exits by itself.
public enum RestartPolicy: String, Sendable, CaseIterable {
    case no
    /// Restart after a non-zero exit code or a signal.
    case onFailure = "on-failure"
    case always
    /// As `always`, except after `tupp stop`: then it stays stopped, across applies and
    /// reboots, until `tupp start`.
    case unlessStopped = "unless-stopped"
}

public struct Mount: Sendable, Equatable {
    /// A host path, a tmpfs, or a volume of the pool (`volumes.NAME`, bound from ROOT/volumes/NAME).
    public enum Kind: String, Sendable, CaseIterable { case bind, tmpfs, volume }

    public var kind: Kind
    /// Host path for bind mounts, the volume's name for volume mounts; nil for tmpfs.
    public var source: String?
    public var target: String
    public var options: [String]
    public var readonly: Bool

    public init(kind: Kind, source: String? = nil, target: String, options: [String] = [], readonly: Bool = false) {
        self.kind = kind
        self.source = source
        self.target = target
        self.options = options
        self.readonly = readonly
    }
}

public struct Container: Sendable, Equatable {
    public struct NetworkAttachment: Sendable, Equatable {
        /// A key of `networks`.
        public var attach: String
        /// Interface name inside the container.
        public var interface: String
        /// nil: allocated from the subnet, stable across applies.
        public var address: IPv4Interface?
        /// Host ports forwarded to the container (nftables DNAT), in the order declared.
        public var ports: [PortPublication]

        public init(attach: String, interface: String = "eth0", address: IPv4Interface? = nil, ports: [PortPublication] = []) {
            self.attach = attach
            self.interface = interface
            self.address = address
            self.ports = ports
        }
    }

    /// What confines the container's processes (issue 15): seccomp, cgroup limits, the
    /// user, a read-only root, rlimits, devices, /dev/shm's size, ambient capabilities.
    public struct Confinement: Sendable, Equatable {
        public var seccomp: SeccompSetting
        public var resources: ResourceLimits
        /// nil: the image's user, else root.
        public var user: UserSpec?
        public var readOnly: Bool
        /// Bytes of /dev/shm; nil: 64 MiB.
        public var shmSize: UInt64?
        public var ulimits: [Ulimit]
        public var devices: [DeviceGrant]
        /// Capabilities also raised in the ambient set, so a non-root user keeps them.
        public var ambient: [Capability]

        public init(seccomp: SeccompSetting = .default, resources: ResourceLimits = ResourceLimits(), user: UserSpec? = nil,
                    readOnly: Bool = false, shmSize: UInt64? = nil, ulimits: [Ulimit] = [], devices: [DeviceGrant] = [],
                    ambient: [Capability] = []) {
            self.seccomp = seccomp
            self.resources = resources
            self.user = user
            self.readOnly = readOnly
            self.shmSize = shmSize
            self.ulimits = ulimits
            self.devices = devices
            self.ambient = ambient
        }
    }

    /// The container's /etc/resolv.conf and /etc/hosts settings. nil: the host's resolvers
    /// (servers, search domains, options), each replaced separately when given.
    public struct NameService: Sendable, Equatable {
        public var dns: [IPv4Address]?
        public var search: [String]?
        public var options: [String]?
        /// Extra /etc/hosts lines, name → address.
        public var hosts: [String: IPv4Address]

        public init(dns: [IPv4Address]? = nil, search: [String]? = nil, options: [String]? = nil, hosts: [String: IPv4Address] = [:]) {
            self.dns = dns
            self.search = search
            self.options = options
            self.hosts = hosts
        }
    }

    public var name: String
    public var image: String
    public var hostname: String?
    public var namespaces: [Namespace]
    public var mounts: [Mount]
    public var network: NetworkAttachment?
    /// Replaces the image's Cmd; nil: the image's (an image without a config needs it).
    public var command: [String]?
    /// Replaces the image's Entrypoint (and, as in Docker, its Cmd unless `command` is
    /// given); nil: the image's.
    public var entrypoint: [String]?
    /// Ordered as written; over the image's environment.
    public var env: [(key: String, value: String)]
    /// nil: the image's WorkingDir, else /.
    public var workdir: String?
    public var restart: RestartPolicy
    public var capabilitiesAdd: [Capability]
    public var capabilitiesDrop: [Capability]
    /// Seconds between SIGTERM and SIGKILL when stopping.
    public var stopTimeout: Double
    public var protect: Bool
    public var nameService: NameService
    public var confinement: Confinement
    /// Health check, start order, stop signal, environment files.
    public var lifecycle: Lifecycle
    /// `userns:`; nil: the manifest's `defaults.userns` (`Manifest.userns(of:)`).
    public var userns: UserNamespaceMode?
    /// `delegateCgroup: true`: the container's root manages its own cgroup (cgroup v2): a
    /// cgroup namespace rooted there, cgroup2 mounted read-write at /sys/fs/cgroup, and the
    /// cgroup's delegation files owned by container root.
    public var delegateCgroup: Bool

    public init(name: String, image: String, hostname: String? = nil, namespaces: [Namespace] = Namespace.defaults,
                mounts: [Mount] = [], network: NetworkAttachment? = nil, command: [String]?, entrypoint: [String]? = nil,
                env: [(key: String, value: String)] = [], workdir: String? = nil, restart: RestartPolicy = .no,
                capabilitiesAdd: [Capability] = [], capabilitiesDrop: [Capability] = [],
                stopTimeout: Double = 10, protect: Bool = false, nameService: NameService = NameService(),
                confinement: Confinement = Confinement(), lifecycle: Lifecycle = Lifecycle(), userns: UserNamespaceMode? = nil,
                delegateCgroup: Bool = false) {
        self.userns = userns
        self.delegateCgroup = delegateCgroup
        self.nameService = nameService
        self.confinement = confinement
        self.lifecycle = lifecycle
        self.name = name
        self.image = image
        self.hostname = hostname
        self.namespaces = namespaces
        self.mounts = mounts
        self.network = network
        self.command = command
        self.entrypoint = entrypoint
        self.env = env
        self.workdir = workdir
        self.restart = restart
        self.capabilitiesAdd = capabilitiesAdd
        self.capabilitiesDrop = capabilitiesDrop
        self.stopTimeout = stopTimeout
        self.protect = protect
    }

    /// The hostname the container gets: the declared one, else its name — when it has
    /// its own UTS namespace.
    public var effectiveHostname: String? {
        namespaces.contains(.uts) ? (hostname ?? name) : nil
    }

    /// The capability set the command runs with: the default set adjusted by add/drop.
    public var effectiveCapabilities: [Capability] {
        var set = Set(Capability.defaults)
        set.formUnion(capabilitiesAdd)
        set.subtract(capabilitiesDrop)
        return set.sorted()
    }

    public static func == (a: Container, b: Container) -> Bool {
        a.name == b.name && a.image == b.image && a.hostname == b.hostname && a.namespaces == b.namespaces
            && a.mounts == b.mounts && a.network == b.network && a.command == b.command && a.entrypoint == b.entrypoint
            && a.env.map(\.key) == b.env.map(\.key) && a.env.map(\.value) == b.env.map(\.value)
            && a.workdir == b.workdir && a.restart == b.restart && a.capabilitiesAdd == b.capabilitiesAdd
            && a.capabilitiesDrop == b.capabilitiesDrop && a.stopTimeout == b.stopTimeout && a.protect == b.protect
            && a.nameService == b.nameService && a.confinement == b.confinement && a.lifecycle == b.lifecycle
            && a.userns == b.userns && a.delegateCgroup == b.delegateCgroup
    }
}

/// A position in a manifest file, 1-based like compilers print it.
public struct Mark: Hashable, Sendable, Comparable, CustomStringConvertible {
    public var line: Int
    public var column: Int

    public init(line: Int, column: Int) {
        self.line = line
        self.column = column
    }

    public var description: String { "\(line):\(column)" }

    public static func < (a: Mark, b: Mark) -> Bool { (a.line, a.column) < (b.line, b.column) }
}

/// `seccomp:` of a container.
public enum SeccompSetting: Sendable, Equatable, CustomStringConvertible {
    /// Docker's default allowlist, adjusted to the container's capabilities.
    case `default`
    case unconfined
    /// A profile in the Docker/OCI JSON format, read from this file.
    case profile(path: String)

    public var description: String {
        switch self {
        case .default: "default"
        case .unconfined: "unconfined"
        case .profile(let path): path
        }
    }
}

/// Where manifest elements came from, for errors that point at them.
public struct SourceMap: Sendable, Equatable {
    public struct Location: Sendable, Equatable {
        public var file: String
        public var mark: Mark

        public init(file: String, mark: Mark) {
            self.file = file
            self.mark = mark
        }
    }

    private var locations: [String: Location] = [:]

    public init() {}

    public subscript(path: String) -> Location? {
        get { locations[path] }
        set { locations[path] = newValue }
    }

    /// The location of `path`, or of its nearest recorded parent.
    public func nearest(_ path: String) -> Location? {
        var p = Substring(path)
        while true {
            if let l = locations[String(p)] { return l }
            guard let cut = p.lastIndex(where: { $0 == "." || $0 == "[" }) else { return nil }
            p = p[..<cut]
        }
    }
}
