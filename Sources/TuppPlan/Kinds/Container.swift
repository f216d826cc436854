import Synchronization
import TuppBase
import TuppFacts
import TuppManifest

/// A container's attributes and what changing each one does (MANIFEST.md, "Semantics").
public enum ContainerAttribute {
    public static let image = AttributePath("image")
    public static let namespaces = AttributePath("namespaces")
    public static let command = AttributePath("command")
    public static let workdir = AttributePath("workdir")
    public static let restart = AttributePath("restart")
    public static let capabilities = AttributePath("capabilities")
    public static let stopTimeout = AttributePath("stop_timeout")
    public static let hostname = AttributePath("hostname")
    public static let mounts = AttributePath("mounts")
    /// `env.KEY`, one attribute per variable.
    public static let env = AttributePath("env")
    /// `network.*`: the attachment, all changed on the live container.
    public static let network = AttributePath("network")
    public static let networkAttach = network.child("attach")
    public static let networkBridge = network.child("bridge")
    public static let networkInterface = network.child("interface")
    public static let networkGateway = network.child("gateway")
    public static let networkAddress = network.child("address")
    /// Published ports, as "0.0.0.0:8080:80/tcp": changed in place (the ports kind
    /// changes the rules; the container keeps its process).
    public static let networkPorts = network.child("ports")
    /// The container's /etc/resolv.conf, line by line.
    public static let dns = AttributePath("dns")
    /// Confinement (issue 15): changing any of these restarts the process...
    public static let user = AttributePath("user")
    public static let readOnly = AttributePath("read_only")
    public static let seccomp = AttributePath("seccomp")
    public static let shmSize = AttributePath("shm_size")
    public static let ulimits = AttributePath("ulimits")
    public static let devices = AttributePath("devices")
    public static let ambient = AttributePath("capabilities_ambient")
    /// ...except cgroup limits, written into the live cgroup: `resources.memory`, …
    public static let resources = AttributePath("resources")
    /// `userns: auto` (absent for host), and its maps as /proc/PID/uid_map shows them:
    /// `userns.uid_map`, `userns.gid_map`. A change restarts the process on the same
    /// snapshot: nothing on disk is shifted (idmapped mounts).
    public static let userns = AttributePath("userns")
    public static let usernsUIDMap = userns.child("uid_map")
    public static let usernsGIDMap = userns.child("gid_map")
    /// `delegateCgroup: true` (absent when false): restarts the process.
    public static let delegateCgroup = AttributePath("delegate_cgroup")

    /// Its /etc/hosts lines of the manifest's `hosts:`.
    public static let hosts = AttributePath("hosts")
    /// Its /etc/hosts lines of the other containers on its network (of every project):
    /// rewritten in place when one comes, goes or moves.
    public static let peers = AttributePath("peers")
    /// `healthcheck.command`, `.interval`, `.timeout`, `.retries`, `.start_period`: the
    /// supervisor takes a new check in place.
    public static let healthcheck = AttributePath("healthcheck")
    public static let onUnhealthy = AttributePath("on_unhealthy")
    public static let stopSignal = AttributePath("stop_signal")
    /// "db: healthy", "cache: started (restart)": the start order, nothing on the host.
    public static let dependsOn = AttributePath("depends_on")
    /// The files `env` was read from (their variables are `env.*`).
    public static let envFile = AttributePath("env_file")

    public static let schema = AttributeSchema([
        AttributeRule(image, .replace),
        AttributeRule(namespaces, .replace),
        AttributeRule(command, .restart),
        AttributeRule(workdir, .restart),
        AttributeRule(capabilities, .restart),
        AttributeRule(mounts, .restart, optional: true),
        AttributeRule(env, .restart, family: true, optional: true),
        AttributeRule(restart, .inPlace),
        AttributeRule(stopTimeout, .inPlace),
        AttributeRule(hostname, .inPlace, optional: true),
        AttributeRule(network, .inPlace, family: true, optional: true),
        AttributeRule(user, .restart, optional: true),
        AttributeRule(readOnly, .restart, optional: true),
        AttributeRule(seccomp, .restart),
        AttributeRule(shmSize, .restart, optional: true),
        AttributeRule(ulimits, .restart, optional: true),
        AttributeRule(devices, .restart, optional: true),
        AttributeRule(ambient, .restart, optional: true),
        AttributeRule(resources, .inPlace, family: true, optional: true),
        AttributeRule(userns, .restart, optional: true),
        AttributeRule(userns, .restart, family: true, optional: true),
        AttributeRule(delegateCgroup, .restart, optional: true),
        AttributeRule(dns, .inPlace, optional: true),
        AttributeRule(hosts, .inPlace, optional: true),
        AttributeRule(peers, .inPlace, optional: true),
        AttributeRule(healthcheck, .inPlace, family: true, optional: true),
        AttributeRule(onUnhealthy, .inPlace, optional: true),
        AttributeRule(stopSignal, .inPlace, optional: true),
        AttributeRule(dependsOn, .inPlace, optional: true),
        AttributeRule(envFile, .inPlace, optional: true),
    ])
}

/// A container as the reconciler starts it: every default resolved (hostname,
/// capabilities, the allocated address, the network's bridge and gateway).
public struct ContainerSpec: ResourceSpec, Equatable {
    /// Where the container plugs in.
    public struct Attachment: Sendable, Equatable {
        public var network: String
        public var bridge: String
        public var interface: String
        public var address: IPv4Interface
        public var gateway: IPv4Address
        public var mtu: Int?
        public var ports: [PortPublication]
    }

    public var name: String
    public var image: String
    /// nil: the container shares the host's UTS namespace and its hostname is not set.
    public var hostname: String?
    public var namespaces: [Namespace]
    public var mounts: [Mount]
    /// What runs: the manifest's entrypoint and command over the image config's.
    public var command: [String]
    /// The image config's Env, then the env files', then the manifest's `env`.
    public var env: [String: String]
    public var workdir: String
    public var restart: RestartPolicy
    public var capabilities: [Capability]
    /// Seconds between SIGTERM and SIGKILL.
    public var stopTimeout: Double
    public var protect: Bool
    public var network: Attachment?
    /// /etc/resolv.conf and /etc/hosts.
    public var names: NameSettings
    /// The manifest's confinement; its user defaults to the image config's User.
    public var confinement: Container.Confinement
    /// The seccomp profile file's content digest ("sha256:…"), when `seccomp` names one: an
    /// edited profile restarts the process like a changed setting.
    public var seccompDigest: String?
    /// The container as declared, while its image's config is known only once the image
    /// is pulled: apply completes what the config defaults with `resolved(with:)`.
    public var awaitingImageConfig: Container?
    /// Run by the supervisor inside the container: the manifest's, else the image's own
    /// Healthcheck.
    public var healthcheck: Healthcheck?
    public var onUnhealthy: OnUnhealthy
    /// What stop sends first: the manifest's, else the image's StopSignal, else SIGTERM.
    public var stopSignal: Signal
    /// The containers this one waits for before its command starts.
    public var dependsOn: [String: Dependency]
    public var envFiles: [String]
    /// `userns: auto`: the maps allocated to it (`UserNamespaceAllocator`); nil: the host's.
    public var userNamespace: IDMapping?
    /// Container root manages its own cgroup (cgroup v2).
    public var delegateCgroup: Bool

    public init(_ c: Container, network: Network?, address: IPv4Interface?, names: NameSettings = NameSettings(),
                seccompDigest: String? = nil, image: ImageDefaults = .none, userNamespace: IDMapping? = nil) {
        self.userNamespace = userNamespace
        delegateCgroup = c.delegateCgroup
        self.names = names
        confinement = c.confinement
        self.seccompDigest = seccompDigest
        name = c.name
        self.image = c.image
        hostname = c.effectiveHostname
        namespaces = c.namespaces.sorted()
        mounts = c.mounts
        command = []
        env = [:]
        workdir = "/"
        healthcheck = c.lifecycle.healthcheck
        onUnhealthy = c.lifecycle.onUnhealthy
        stopSignal = c.lifecycle.stopSignal ?? .term
        dependsOn = c.lifecycle.dependsOn
        envFiles = c.lifecycle.envFiles
        restart = c.restart
        capabilities = c.effectiveCapabilities
        stopTimeout = c.stopTimeout
        protect = c.protect
        if let attachment = c.network, let network, let address = address ?? attachment.address {
            self.network = Attachment(network: network.name, bridge: network.bridge, interface: attachment.interface,
                                      address: address, gateway: network.gateway, mtu: network.mtu, ports: attachment.ports)
        }
        switch image {
        case .none: apply(RunSettings(c, config: nil), declared: c)
        case .config(let config): apply(RunSettings(c, config: config), declared: c)
        case .unknown:
            apply(RunSettings(c, config: nil), declared: c)
            awaitingImageConfig = c
        }
    }

    mutating func apply(_ run: RunSettings, declared c: Container) {
        command = run.command
        env = run.env
        workdir = run.workdir
        // An image's User or StopSignal that does not parse is ignored, as if it had none.
        confinement.user = c.confinement.user ?? run.user.flatMap(UserSpec.init)
        stopSignal = c.lifecycle.stopSignal ?? run.stopSignal.flatMap(Signal.init) ?? .term
        healthcheck = c.lifecycle.healthcheck ?? run.healthcheck
    }

    /// The spec once the image's config is known (after its pull).
    public func resolved(with config: ImageConfig?) -> ContainerSpec {
        guard let declared = awaitingImageConfig else { return self }
        var spec = self
        spec.apply(RunSettings(declared, config: config), declared: declared)
        spec.awaitingImageConfig = nil
        return spec
    }

    /// Why the container cannot start as planned: nothing to run.
    public var problem: String? {
        guard command.isEmpty, awaitingImageConfig == nil else { return nil }
        return "container.\(name) has nothing to run: neither the manifest nor the config of image.\(image) gives an entrypoint or command; declare `command:`"
    }
}

/// The containers of one network, by name: every container's /etc/hosts lists the others.
/// Built once per network and shared (copy on write) by all its containers' specs, with an
/// order-free digest, so a plan stays linear in the number of containers.
public struct NetworkMembers: Sendable, Equatable {
    public private(set) var addresses: [String: IPv4Address] = [:]
    /// XOR of every member's hash: a member's view of the others is this minus itself.
    public private(set) var digest: UInt64 = 0
    /// The /etc/hosts lines, made on first use and shared by every copy (a new one per
    /// change: copies made before a change keep theirs).
    private var rendered = RenderedLines()

    public init() {}

    public init(_ addresses: [String: IPv4Address]) {
        for (name, address) in addresses { insert(name, address) }
    }

    public mutating func insert(_ name: String, _ address: IPv4Address) {
        if let old = addresses[name] { digest ^= Self.hash(name, old) }
        addresses[name] = address
        digest ^= Self.hash(name, address)
        rendered = RenderedLines()
    }

    /// The members as /etc/hosts lines, made once for all the network's containers.
    public var lines: HostsFile.PeerLines {
        rendered.value.withLock { lines in
            if let lines { return lines }
            let made = HostsFile.PeerLines(addresses)
            lines = made
            return made
        }
    }

    public static func == (a: NetworkMembers, b: NetworkMembers) -> Bool {
        a.addresses == b.addresses && a.digest == b.digest
    }

    private final class RenderedLines: Sendable {
        let value = Mutex<HostsFile.PeerLines?>(nil)
    }

    static func hash(_ name: String, _ address: IPv4Address) -> UInt64 { StableHash(name, address.description).value }

    /// What `container`'s /etc/hosts says of the others, as the plan shows it: their names
    /// and addresses on a small network, a count and digest on a large one.
    public func summary(except container: String) -> Value {
        let others = addresses.count - (addresses[container] == nil ? 0 : 1)
        if others <= Self.listedUpTo {
            return .strings(HostsFile.display(lines.lines(except: container)))
        }
        let own = addresses[container].map { Self.hash(container, $0) } ?? 0
        return .string("\(others) containers (\(String(digest ^ own, radix: 16)))")
    }

    /// Up to this many others, the plan lists them.
    static let listedUpTo = 8
}

/// What a container's /etc/resolv.conf and /etc/hosts hold.
public struct NameSettings: Sendable, Equatable {
    public var resolver: ResolverSettings
    /// Why the resolver is not what one would expect (a loopback stub left out), for the plan.
    public var resolverWarnings: [String]
    public var extraHosts: [String: IPv4Address]
    /// Every container on its network, itself included (the file leaves itself out).
    public var members: NetworkMembers

    public init(resolver: ResolverSettings = ResolverSettings(), resolverWarnings: [String] = [],
                extraHosts: [String: IPv4Address] = [:], members: NetworkMembers = NetworkMembers()) {
        self.resolver = resolver
        self.resolverWarnings = resolverWarnings
        self.extraHosts = extraHosts
        self.members = members
    }

    /// The settings of `c`: its dns settings over the host's, its extras, its network's members.
    public init(_ c: Container, members: NetworkMembers, resolvers: HostResolvers) {
        let (resolver, warnings) = ResolvConf.forContainer(dns: c.nameService.dns, search: c.nameService.search,
                                                            options: c.nameService.options, host: resolvers.host,
                                                            resolvedUpstream: resolvers.resolvedUpstream)
        self.init(resolver: resolver, resolverWarnings: warnings, extraHosts: c.nameService.hosts, members: members)
    }

    /// The resolv.conf lines (the file without its comment).
    public var resolverLines: [String] {
        ((try? ResolvConf.render(resolver, container: "")) ?? "").split(separator: "\n").map(String.init).filter { !$0.hasPrefix("#") }
    }

    /// The /etc/hosts lines of the manifest's `hosts:`.
    public var extraLines: [String] { HostsFile.extraLines(extraHosts) }
}

/// Why a container needs work although its attributes match.
public enum ContainerCondition: ResourceCondition, Equatable {
    /// Processes, links or a runtime directory without a record.
    case leftovers
    case createUnfinished
    /// An update in place or a restart was interrupted: it is done again in full.
    case updateUnfinished
    case snapshotMissing(container: String)
    case snapshotOfOlderImage(image: String)
    case stopping
    case notRunning(why: String)
    case hostVethDown(String)
    case hostVethMissing(String)
    case interfaceDown(String)
    /// Started without tupp's /etc/hosts and /etc/resolv.conf (by an older tupp): they are
    /// bind-mounted at start.
    case nameFilesMissing
    /// A cgroup limit file reads otherwise than tupp wrote it: rewritten in place.
    case limitChanged(String)

    public var effect: ChangeEffect {
        switch self {
        case .leftovers, .createUnfinished, .snapshotMissing, .snapshotOfOlderImage: .replace
        case .stopping, .notRunning, .nameFilesMissing: .restart
        case .updateUnfinished, .hostVethDown, .hostVethMissing, .interfaceDown, .limitChanged: .inPlace
        }
    }

    /// The container's network must be plugged again (same process).
    public var needsReplug: Bool {
        switch self {
        case .updateUnfinished, .hostVethDown, .hostVethMissing, .interfaceDown: true
        default: false
        }
    }

    public var description: String {
        switch self {
        case .leftovers: "leftovers of an earlier container are removed"
        case .createUnfinished: "an earlier apply did not finish creating it"
        case .updateUnfinished: "an earlier apply did not finish changing it"
        case .snapshotMissing(let name): "snapshot containers/\(name) is missing"
        case .snapshotOfOlderImage(let image): "snapshot of an older image (images/\(image) was replaced)"
        case .stopping: "process is stopping"
        case .notRunning(let why): why
        case .hostVethDown(let veth): "host veth \(veth) is down"
        case .hostVethMissing(let veth): "host veth \(veth) is missing"
        case .interfaceDown(let interface): "\(interface) is down inside the container"
        case .nameFilesMissing: "it has no /etc/hosts and /etc/resolv.conf of tupp's; they are mounted at restart"
        case .limitChanged(let what): "cgroup limit changed outside tupp: \(what)"
        }
    }
}

extension Record {
    /// The container's snapshot subvolume UUID when it was created.
    public var containerSnapshotUUID: String? { facts["snapshot"] }

    /// What identifies a started container: its host veth, snapshot, supervisor and init
    /// (pid + start time), and the digest of the spec the supervisor runs.
    public mutating func setContainerFacts(hostVeth: String, snapshot: String?, process: ProcessObservation?, specDigest: String?) {
        let stopped = facts[Record.stoppedFact]
        facts = ["hostVeth": hostVeth]
        // `tupp stop` holds while the container does not run.
        if let stopped, !(process?.isRunning ?? false) { facts[Record.stoppedFact] = stopped }
        if let snapshot { facts["snapshot"] = snapshot }
        if let process {
            facts["initPID"] = String(process.initPID)
            facts["initStartTime"] = String(process.initStartTime)
            facts["shimPID"] = String(process.shimPID)
        }
        if let specDigest { facts["spec"] = specDigest }
    }

    /// Set by `tupp stop`, cleared by `tupp start`.
    public static let stoppedFact = "stopped"

    /// The maps a restart starts the process with (`userns: auto`), recorded with the
    /// `updating` intent while the attributes still hold the ones from before: killed after
    /// the new process started and before `ready` — its supervisor maybe still dying, not yet
    /// the container's to observe — the range stays this container's instead of moving (or
    /// going to another one). Cleared with the other facts when the record is `ready`.
    public var startingUserNamespace: IDMapping? {
        get {
            guard let uids = facts["startingUIDMap"].flatMap(IDMapping.parse(rendered:)),
                  let gids = facts["startingGIDMap"].flatMap(IDMapping.parse(rendered:)) else { return nil }
            return IDMapping(uids: uids, gids: gids)
        }
        set {
            facts["startingUIDMap"] = newValue.map { IDMapping.render($0.uids) }
            facts["startingGIDMap"] = newValue.map { IDMapping.render($0.gids) }
        }
    }

    /// The host ids the record holds for its container: those a restart under way starts it
    /// with, else the recorded ones; nil for the host's user namespace.
    public var heldUserNamespace: IDMapping? { startingUserNamespace ?? ContainerKind.userNamespace(attributes) }

    /// Stopped with `tupp stop`.
    public var stoppedByUser: Bool { facts[Record.stoppedFact] == "true" }

    /// Stopped with `tupp stop` under `restart: unless-stopped`: not drift, left stopped
    /// by apply (and after a reboot) until `tupp start`.
    public var stoppedOnPurpose: Bool {
        stoppedByUser && attributes[ContainerAttribute.restart] == .string(RestartPolicy.unlessStopped.rawValue)
    }

    /// The stamp of the /etc/hosts tupp last wrote for a container.
    public var hostsStamp: String? {
        get { facts["hostsStamp"] }
        set { facts["hostsStamp"] = newValue }
    }

    /// The address a container was given (allocated addresses stay while it exists).
    public var containerAddress: IPv4Interface? {
        attributes[ContainerAttribute.networkAddress]?.string.flatMap(IPv4Interface.init)
    }
}

/// What the container reconciler read from the host.
public struct ContainerFacts: Sendable {
    /// The pool's subvolumes; nil while the pool is not mounted.
    public var contents: PoolContents?
    /// The host's links (the host ends of the veths).
    public var host: NetworkSnapshot?
    /// Each container's supervisor and command.
    public var processes: [String: ProcessObservation]
    /// Each running container's network namespace, seen from inside.
    public var namespaces: [String: NetworkSnapshot]
    /// Live hostnames, read inside each running container's UTS namespace.
    public var hostnames: [String: String]
    /// Each running container's /etc/hosts stamp (size, mtime, ctime) and, where it differs
    /// from the recorded one, its text; its /etc/resolv.conf (nil: absent).
    public var hostsStamps: [String: String] = [:]
    public var hostsFiles: [String: String]
    public var resolvFiles: [String: String]
    /// Cgroup limit files that read otherwise than tupp wrote them, per container
    /// ("memory.limit_in_bytes: 33554432 → 67108864").
    public var limitDrift: [String: [String]] = [:]

    public init(contents: PoolContents?, host: NetworkSnapshot?, processes: [String: ProcessObservation],
                namespaces: [String: NetworkSnapshot] = [:], hostnames: [String: String] = [:],
                hostsFiles: [String: String] = [:], resolvFiles: [String: String] = [:]) {
        self.contents = contents
        self.host = host
        self.processes = processes
        self.namespaces = namespaces
        self.hostnames = hostnames
        self.hostsFiles = hostsFiles
        self.resolvFiles = resolvFiles
    }
}

/// Containers: a snapshot of their image, a supervised process, a veth on their
/// network's bridge. Pure.
public enum ContainerKind {
    public static func desired(_ c: Container, network: Network?, address: IPv4Interface?,
                               names: NameSettings = NameSettings(), seccompDigest: String? = nil,
                               image: ImageDefaults = .none, userNamespace: IDMapping? = nil) -> DesiredResource {
        let spec = ContainerSpec(c, network: network, address: address, names: names, seccompDigest: seccompDigest, image: image,
                                 userNamespace: userNamespace)
        var dependencies = [ResourceAddress(.image, c.image)]
        if let attachment = c.network { dependencies.append(ResourceAddress(.network, attachment.attach)) }
        for volume in Set(c.mounts.filter { $0.kind == .volume }.compactMap(\.source)).sorted() {
            dependencies.append(ResourceAddress(.volume, volume))
        }
        var resource = DesiredResource(ResourceAddress(.container, c.name), attributes: attributes(spec), dependencies: dependencies,
                                       protect: c.protect, spec: spec)
        if spec.awaitingImageConfig != nil {
            resource.notes.append("its command, environment, working directory and user take the defaults of image.\(c.image)'s config, known once it is pulled")
        }
        return resource
    }

    /// The effective values: what runs after the image config's defaults. While those
    /// are not known (`awaitingImageConfig`), command and workdir are left out.
    public static func attributes(_ c: ContainerSpec) -> Attributes {
        var a: Attributes = [
            ContainerAttribute.image: .string(c.image),
            ContainerAttribute.namespaces: .strings(c.namespaces.map(\.rawValue)),
            ContainerAttribute.restart: .string(c.restart.rawValue),
            ContainerAttribute.capabilities: .strings(c.capabilities.map(\.name)),
            ContainerAttribute.stopTimeout: .string(Units.formatDuration(c.stopTimeout)),
        ]
        if c.awaitingImageConfig == nil {
            a[ContainerAttribute.command] = .strings(c.command)
            a[ContainerAttribute.workdir] = .string(c.workdir)
        }
        if let hostname = c.hostname { a[ContainerAttribute.hostname] = .string(hostname) }
        if !c.mounts.isEmpty { a[ContainerAttribute.mounts] = .strings(c.mounts.map(describe)) }
        for (key, value) in c.env { a[ContainerAttribute.env.child(key)] = .string(value) }
        if let n = c.network {
            a[ContainerAttribute.networkAttach] = .string(n.network)
            a[ContainerAttribute.networkBridge] = .string(n.bridge)
            a[ContainerAttribute.networkInterface] = .string(n.interface)
            a[ContainerAttribute.networkGateway] = .string(n.gateway.description)
            a[ContainerAttribute.networkAddress] = .string(n.address.description)
            if !n.ports.isEmpty { a[ContainerAttribute.networkPorts] = .strings(n.ports.map(\.description)) }
        }
        let k = c.confinement
        if let user = k.user { a[ContainerAttribute.user] = .string(user.description) }
        if k.readOnly { a[ContainerAttribute.readOnly] = .bool(true) }
        switch k.seccomp {
        case .profile(let path): a[ContainerAttribute.seccomp] = .string("\(path) (\(c.seccompDigest ?? "unread"))")
        default: a[ContainerAttribute.seccomp] = .string(k.seccomp.description)
        }
        if let shm = k.shmSize { a[ContainerAttribute.shmSize] = .int(Int64(shm)) }
        if !k.ulimits.isEmpty { a[ContainerAttribute.ulimits] = .strings(k.ulimits.map(\.description)) }
        if !k.devices.isEmpty { a[ContainerAttribute.devices] = .strings(k.devices.map { "\($0.path):\($0.permissions)" }) }
        if !k.ambient.isEmpty { a[ContainerAttribute.ambient] = .strings(k.ambient.map(\.name)) }
        for (key, value) in resourceAttributes(k.resources) { a[ContainerAttribute.resources.child(key)] = value }
        for (path, value) in usernsAttributes(c.userNamespace) { a[path] = value }
        if c.delegateCgroup { a[ContainerAttribute.delegateCgroup] = .bool(true) }
        a[ContainerAttribute.dns] = .strings(c.names.resolverLines)
        a[ContainerAttribute.hosts] = .strings(HostsFile.display(c.names.extraLines))
        a[ContainerAttribute.peers] = c.names.members.summary(except: c.name)
        a.merge(lifecycleAttributes(c)) { _, new in new }
        return a
    }

    /// Only what differs from the defaults, so records of containers without these
    /// fields compare equal.
    static func lifecycleAttributes(_ c: ContainerSpec) -> Attributes {
        var a: Attributes = [:]
        if let check = c.healthcheck {
            let h = ContainerAttribute.healthcheck
            a[h.child("command")] = .strings(check.command)
            a[h.child("interval")] = .string(Units.formatDuration(check.interval))
            a[h.child("timeout")] = .string(Units.formatDuration(check.timeout))
            a[h.child("retries")] = .int(Int64(check.retries))
            a[h.child("start_period")] = .string(Units.formatDuration(check.startPeriod))
            a[ContainerAttribute.onUnhealthy] = .string(c.onUnhealthy.rawValue)
        }
        if c.stopSignal != .term { a[ContainerAttribute.stopSignal] = .string(c.stopSignal.description) }
        if !c.dependsOn.isEmpty {
            a[ContainerAttribute.dependsOn] = .strings(c.dependsOn.keys.sorted().map { name in
                let d = c.dependsOn[name]!
                return "\(name): \(d.condition.rawValue)\(d.restart ? " (restart)" : "")"
            })
        }
        if !c.envFiles.isEmpty { a[ContainerAttribute.envFile] = .strings(c.envFiles) }
        return a
    }

    /// `userns`, `userns.uid_map`, `userns.gid_map` of a container with a user namespace;
    /// none for the host's (so containers recorded before user namespaces do not change).
    public static func usernsAttributes(_ mapping: IDMapping?) -> [(AttributePath, Value)] {
        guard let mapping else { return [] }
        return [(ContainerAttribute.userns, .string(UserNamespaceMode.auto.rawValue)),
                (ContainerAttribute.usernsUIDMap, .string(IDMapping.render(mapping.uids))),
                (ContainerAttribute.usernsGIDMap, .string(IDMapping.render(mapping.gids)))]
    }

    /// The maps `attributes` (a record's) hold; nil for the host's namespace.
    public static func userNamespace(_ attributes: Attributes) -> IDMapping? {
        guard attributes[ContainerAttribute.userns]?.string == UserNamespaceMode.auto.rawValue,
              let uids = attributes[ContainerAttribute.usernsUIDMap]?.string.flatMap(IDMapping.parse(rendered:)),
              let gids = attributes[ContainerAttribute.usernsGIDMap]?.string.flatMap(IDMapping.parse(rendered:)) else { return nil }
        return IDMapping(uids: uids, gids: gids)
    }

    /// The limits `attributes` (a record's) hold.
    public static func resourceLimits(_ attributes: Attributes) -> ResourceLimits {
        func int(_ key: String) -> Int? {
            if case .int(let v)? = attributes[ContainerAttribute.resources.child(key)] { Int(v) } else { nil }
        }
        return ResourceLimits(memory: int("memory"), memorySwap: int("memorySwap"),
                              cpus: attributes[ContainerAttribute.resources.child("cpus")]?.string.flatMap(Double.init),
                              cpuWeight: int("cpuWeight"), pids: int("pids"), ioWeight: int("ioWeight"))
    }

    /// The declared cgroup limits, keyed as in the manifest.
    static func resourceAttributes(_ r: ResourceLimits) -> [(String, Value)] {
        var out: [(String, Value)] = []
        if let v = r.memory { out.append(("memory", .int(Int64(v)))) }
        if let v = r.memorySwap { out.append(("memorySwap", .int(Int64(v)))) }
        if let v = r.cpus { out.append(("cpus", .string(String(v)))) }
        if let v = r.cpuWeight { out.append(("cpuWeight", .int(Int64(v)))) }
        if let v = r.pids { out.append(("pids", .int(Int64(v)))) }
        if let v = r.ioWeight { out.append(("ioWeight", .int(Int64(v)))) }
        return out
    }

    /// "tmpfs /tmp (size=64m)", "bind /srv/data → /data (ro)", "volume pgdata → /var/lib/db"
    /// (read back by `parseMount`).
    public static func describe(_ m: Mount) -> String {
        var options = m.options
        if m.readonly && !options.contains("ro") { options.append("ro") }
        let suffix = options.isEmpty ? "" : " (\(options.joined(separator: ",")))"
        switch m.kind {
        case .tmpfs: return "tmpfs \(m.target)\(suffix)"
        case .bind: return "bind \(m.source ?? "?") → \(m.target)\(suffix)"
        case .volume: return "volume \(m.source ?? "?") → \(m.target)\(suffix)"
        }
    }

    /// Every container to observe: declared, recorded, or with a host veth marked as this
    /// installation's (whose record is gone).
    public static func names(declared: some Sequence<String>, records: some Sequence<String>, host: NetworkSnapshot?,
                             installation: String) -> [String] {
        var names = Set(declared).union(records)
        for link in host?.links ?? [] {
            if let owner = link.owner, owner.belongs(toInstallation: installation), owner.role == .container { names.insert(owner.name) }
        }
        return names.sorted()
    }

    /// `images`: the images as interpreted already — a container is not also flagged for
    /// an older image when its image is being replaced anyway.
    public static func interpret(declared: Set<String>, records: [String: Record], facts: ContainerFacts,
                                 images: ObservedState, installation: String) -> KindObservation {
        var out = KindObservation()
        let names = names(declared: declared, records: records.keys, host: facts.host, installation: installation)
        for name in names {
            let address = ResourceAddress(.container, name)
            let process = facts.processes[name] ?? .absent
            let snapshot = facts.contents?.containers[name]
            let hostVeth = LinkNames.hostVeth(installation: installation, container: name)
            let vethLink = facts.host?.link(named: hostVeth)
            guard let record = records[name] else {
                if snapshot != nil {
                    out.resources.append(ObservedResource(address, owned: false))
                } else if vethLink != nil || process.state != .absent {
                    // Leftovers without a record: delete them (or clear them before creating).
                    if declared.contains(name) {
                        out.drift.append(Drift(address, "leftovers of an earlier container (\(vethLink?.name ?? "supervisor")) are removed before it is created"))
                    } else {
                        out.resources.append(ObservedResource(address, conditions: [ContainerCondition.leftovers]))
                    }
                }
                continue
            }
            var resource = ObservedResource(address, attributes: record.attributes, protect: record.protect)
            if record.status == .creating {
                resource.conditions.append(ContainerCondition.createUnfinished)
            } else if record.status == .updating {
                resource.conditions.append(ContainerCondition.updateUnfinished)
            }
            if facts.contents != nil && snapshot == nil {
                if record.status == .ready { resource.drift.append(Drift(address, "its snapshot containers/\(name) was deleted outside tupp")) }
                resource.conditions.append(ContainerCondition.snapshotMissing(container: name))
            }
            if let snapshot, let image = record.attributes[ContainerAttribute.image]?.string,
               let current = facts.contents?.images[image], snapshot.parentUUID != current.uuid,
               images.resources[ResourceAddress(.image, image)]?.conditions.isEmpty ?? true {
                resource.conditions.append(ContainerCondition.snapshotOfOlderImage(image: image))
            }

            // The process: pid + start time, never a recycled pid. A restart under the
            // container's own policy is not drift: status shows restarts and the last exit.
            switch process.state {
            case .running, .starting, .restarting, .exiting:
                break
            case .stopping:
                resource.conditions.append(ContainerCondition.stopping)
            case .exited, .stopped, .absent, .supervisorDied:
                if record.stoppedOnPurpose { break }   // `tupp stop`: it stays stopped until `tupp start`
                let why: String
                if let exit = process.lastExit { why = "process not running (\(exit.status))" }
                else if process.state == .supervisorDied { why = "process not running (its supervisor died)" }
                else { why = "process not running" }
                if record.status == .ready { resource.drift.append(Drift(address, why)) }
                resource.conditions.append(ContainerCondition.notRunning(why: why))
            }
            if process.initPID != 0 {
                out.fingerprints[address] = "init pid \(process.initPID) (start \(process.initStartTime)), snapshot \(snapshot?.uuid ?? "absent"), host veth \(vethLink.map { "#\($0.index)" } ?? "absent")"
            }

            // Live hostname, read inside the UTS namespace.
            if process.isRunning, let recorded = record.attributes[ContainerAttribute.hostname], let live = facts.hostnames[name] {
                if .string(live) != recorded {
                    resource.drift.append(Drift(address, "hostname changed outside tupp (\(recorded) → \"\(live)\")",
                                                path: ContainerAttribute.hostname, recorded: recorded, observed: .string(live)))
                }
                resource.attributes[ContainerAttribute.hostname] = .string(live)
            }

            // The name files tupp wrote: read back, so a change by hand is repaired.
            if process.isRunning {
                if let text = facts.resolvFiles[name] {
                    let live = Value.strings(text.split(separator: "\n").map(String.init).filter { !$0.hasPrefix("#") })
                    let recorded = record.attributes[ContainerAttribute.dns]
                    resource.attributes[ContainerAttribute.dns] = live
                    if let recorded, live != recorded, record.status == .ready {
                        resource.drift.append(Drift(address, "its /etc/resolv.conf was changed outside tupp", path: ContainerAttribute.dns,
                                                    recorded: recorded, observed: live))
                    }
                } else {
                    resource.conditions.append(ContainerCondition.nameFilesMissing)
                }
            }
            // /etc/hosts: unchanged since tupp wrote it (same stamp) holds what the record says;
            // otherwise it is read back.
            if process.isRunning, let stamp = facts.hostsStamps[name], stamp != record.hostsStamp {
                let live = facts.hostsFiles[name].flatMap(HostsFile.parse)
                let values: [(AttributePath, Value?)] = [
                    (ContainerAttribute.hosts, live.map { .strings(HostsFile.display($0.extras)) }),
                    (ContainerAttribute.peers, live.map { NetworkMembers(HostsFile.entries($0.peers)).summary(except: name) }),
                ]
                for (path, value) in values {
                    resource.attributes[path] = value
                    if let recorded = record.attributes[path], value != recorded, record.status == .ready {
                        resource.drift.append(Drift(address, "its /etc/hosts was changed outside tupp", path: path,
                                                    recorded: recorded, observed: value))
                    }
                }
            }

            // The user namespace as the kernel shows it, while the process runs.
            if process.isRunning {
                let recorded = userNamespace(record.attributes)
                for path in [ContainerAttribute.userns, ContainerAttribute.usernsUIDMap, ContainerAttribute.usernsGIDMap] {
                    resource.attributes[path] = nil
                }
                for (path, value) in usernsAttributes(process.userNamespace) { resource.attributes[path] = value }
                if record.status == .ready, process.userNamespace != recorded {
                    let seen = process.userNamespace.map { "uid_map \(IDMapping.render($0.uids))" } ?? "the host's user namespace"
                    let wanted = recorded.map { "uid_map \(IDMapping.render($0.uids))" } ?? "the host's user namespace"
                    resource.drift.append(Drift(address, "its process runs in \(seen), not \(wanted) as recorded"))
                }
            }

            for what in facts.limitDrift[name] ?? [] {
                resource.drift.append(Drift(address, "cgroup limit changed outside tupp: \(what)"))
                resource.conditions.append(ContainerCondition.limitChanged(what))
            }

            // Live network: the host end on the bridge, the address and route inside.
            if process.isRunning, let interface = record.attributes[ContainerAttribute.networkInterface]?.string {
                if let link = vethLink {
                    let master = link.masterIndex.flatMap { facts.host?.link(index: $0)?.name }
                    resource.attributes[ContainerAttribute.networkBridge] = master.map(Value.string)
                    if master == nil { resource.drift.append(Drift(address, "host veth \(hostVeth) was detached from its bridge")) }
                    if !link.isUp { resource.conditions.append(ContainerCondition.hostVethDown(hostVeth)) }
                } else {
                    resource.drift.append(Drift(address, "host veth \(hostVeth) was deleted outside tupp"))
                    resource.conditions.append(ContainerCondition.hostVethMissing(hostVeth))
                }
                if let inside = facts.namespaces[name] {
                    if let peer = inside.link(named: interface) {
                        let addresses = inside.addresses(onLink: peer.index)
                        resource.attributes[ContainerAttribute.networkAddress] = addresses.first.map { .string($0.description) }
                        resource.attributes[ContainerAttribute.networkGateway] = inside.defaultRoute?.gateway.map { .string($0.description) }
                        if !peer.isUp { resource.conditions.append(ContainerCondition.interfaceDown(interface)) }
                    } else {
                        resource.attributes[ContainerAttribute.networkAddress] = nil
                        resource.attributes[ContainerAttribute.networkGateway] = nil
                    }
                    let recordedAddress = record.attributes[ContainerAttribute.networkAddress]
                    if record.status == .ready, resource.attributes[ContainerAttribute.networkAddress] != recordedAddress {
                        resource.drift.append(Drift(address, "address inside changed outside tupp (\(recordedAddress?.description ?? "none") → \(resource.attributes[ContainerAttribute.networkAddress]?.description ?? "none"))"))
                    }
                }
            }
            out.resources.append(resource)
        }
        return out
    }

    /// The note every replaced container gets: its writable snapshot is lost.
    static func snapshotNote(_ address: ResourceAddress) -> String {
        "the writable snapshot containers/\(address.name) is discarded: changes made inside the container are lost"
    }
}
